"""T5's token conventions: a SentencePiece tokenizer and a seq2seq preprocessor that follow them.

T5 (and every HuggingFace T5 / T5 v1.1 / Flan-T5 checkpoint) numbers its pieces differently
from the toolkit's own tokenizers (`GopherTokenizer`: pad 0, `</s>` 1, `<s>` 2, `<unk>` 3):

- pad `<pad>` = 0, eos `</s>` = 1, unk `<unk>` = 2, **no** `<s>`;
- the decoder starts from pad (`decoder_start_token_id = 0`);
- 100 sentinels `<extra_id_0>` ... `<extra_id_99>` sit above the SentencePiece vocabulary,
  counting down from the top: `<extra_id_N>` = `sp_size + extra_ids - 1 - N` (32,099 down to
  32,000 for T5's 32,000-piece `spiece.model`), exactly as `transformers`' `T5Tokenizer` numbers
  them. `spiece.model` itself does not hold them; `with_extra_ids` appends them to the model
  proto as user-defined pieces (what T5's own `seqio.SentencePieceVocabulary` does), so the
  in-graph tensorflow-text tokenizer knows them by name.

Which convention a model follows is a property of its tokenizer class, saved in the preset
(`tokenizer.json`): `start_token_id` is the decoder's first token (pad here, `<s>` for
`GopherTokenizer`), and the export code and fine-tuning read it from there.
"""
import re

import keras
from keras_hub.tokenizers import SentencePieceTokenizer

from massivetext_tf.models.encoder_decoder.backbone import EncoderDecoderBackbone
from massivetext_tf.models.encoder_decoder.preprocessor import EncoderDecoderSeq2SeqLMPreprocessor
from massivetext_tf.protowire import read_varint, varint

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
DEFAULT_EXTRA_IDS = 100  # transformers' T5Tokenizer default
_EXTRA_ID = re.compile(rb"^<extra_id_(\d+)>$")
_USER_DEFINED = 4  # sentencepiece.ModelProto.SentencePiece.Type.USER_DEFINED
# transformers' T5 tokenizers (fast, and slow with its default `legacy=True`) split the text at
# sentinels, strip the whitespace around each (`lstrip`/`rstrip`) and encode every piece after
# one as a new text (with SentencePiece's leading `▁`). One space after each sentinel and none
# before gives SentencePiece the same pieces.
_SENTINEL_SPACING = (r"\s*(<extra_id_[0-9]+>)\s*", r"\1 ")


def normalize_sentinels_text(text):
    """`normalize_sentinels` of one Python string (for host-side SentencePiece encoding)."""
    return re.sub(_SENTINEL_SPACING[0], _SENTINEL_SPACING[1], text)


def normalize_sentinels(texts):
    """`texts` (string tensor) with the whitespace around `<extra_id_N>` made as transformers'
    T5 tokenizers see it (see `_SENTINEL_SPACING`); used in-graph before SentencePiece."""
    import tensorflow as tf

    return tf.strings.regex_replace(texts, *_SENTINEL_SPACING)


# --- The SentencePiece model proto, read and extended with the wire format only ---------------
# (sentencepiece's own `sentencepiece_model_pb2` needs a newer protobuf runtime than
# TensorFlow pins, so the few fields we touch are read and written by hand.)






def _fields(data):
    """`(field_number, wire_type, start, end, payload)` of each top-level field of a message."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
            payload = value
        elif wire == 1:
            payload, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = read_varint(data, pos)
            payload, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            payload, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
        yield number, wire, start, pos, payload


def _piece(payload):
    """`(piece bytes, type)` of one serialized `SentencePiece` message."""
    piece, kind = b"", 1
    for number, _, _, _, value in _fields(payload):
        if number == 1:
            piece = bytes(value)
        elif number == 3:
            kind = value
    return piece, kind


def pieces(proto):
    """`[(piece, type)]` of a serialized SentencePiece model, in id order."""
    return [_piece(payload) for number, wire, _, _, payload in _fields(proto) if number == 1 and wire == 2]


def with_extra_ids(proto, extra_ids=DEFAULT_EXTRA_IDS):
    """`proto` with `<extra_id_{extra_ids-1}>` ... `<extra_id_0>` appended as user-defined
    pieces, so `<extra_id_N>` gets id `size + extra_ids - 1 - N` as in `transformers`'
    `T5Tokenizer`. A model that already ends with its sentinels is returned unchanged."""
    proto = bytes(proto)
    if count_extra_ids(proto):
        return proto
    out = bytearray(proto)
    for n in reversed(range(extra_ids)):
        name = f"<extra_id_{n}>".encode()
        piece = b"\x0a" + varint(len(name)) + name + b"\x15\x00\x00\x00\x00" + b"\x18" + varint(_USER_DEFINED)
        out += b"\x0a" + varint(len(piece)) + piece
    return bytes(out)


def count_extra_ids(proto):
    """How many `<extra_id_N>` user-defined pieces end `proto` (0 for a plain `spiece.model`)."""
    found = 0
    for piece, kind in reversed(pieces(proto)):
        match = _EXTRA_ID.match(piece)
        if kind != _USER_DEFINED or not match or int(match.group(1)) != found:
            break
        found += 1
    return found


def without_extra_ids(proto):
    """`(spiece_proto, extra_ids)`: the inverse of `with_extra_ids`, for writing a
    `spiece.model` that `transformers`' `T5Tokenizer` extends again itself."""
    proto = bytes(proto)
    extra = count_extra_ids(proto)
    if not extra:
        return proto, 0
    spans = [(start, end) for number, wire, start, end, _ in _fields(proto) if number == 1 and wire == 2]
    drop = spans[-extra:]
    out, pos = bytearray(), 0
    for start, end in drop:
        out += proto[pos:start]
        pos = end
    out += proto[pos:]
    return bytes(out), extra


def check_t5_proto(proto, source="tokenizer"):
    """Raise `ValueError` naming `source` unless the SentencePiece model follows T5's ids
    (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_proto=bytes(proto))
    except Exception as e:  # sentencepiece raises RuntimeError / OSError on a bad proto
        raise ValueError(f"{source}: not a SentencePiece model ({' '.join(str(e).split())}).") from None
    got = {"pad": sp.pad_id(), "eos": sp.eos_id(), "unk": sp.unk_id(), "bos": sp.bos_id()}
    want = {"pad": PAD_ID, "eos": EOS_ID, "unk": UNK_ID, "bos": -1}
    if got != want:
        raise ValueError(
            f"{source}: SentencePiece ids {got} do not follow T5's convention {want} "
            "(pad 0, eos 1, unk 2, no bos)."
        )
    return sp.get_piece_size()


@keras.saving.register_keras_serializable(package="massivetext_tf")
class T5Tokenizer(SentencePieceTokenizer):
    """keras-hub `SentencePieceTokenizer` (in-graph, tensorflow-text) with T5's conventions:
    `<pad>` = 0 is both the pad token and the decoder start token (`start_token_id`), `</s>`
    = 1 ends a sequence, `<unk>` = 2, and there is no `<s>`. Sentinels `<extra_id_N>` are
    pieces of the proto (see `with_extra_ids`), found by name with `sentinel_id(n)`.

    Args:
        proto: SentencePiece model file path or serialized proto bytes (with its extra ids).

    Example:
    >>> tokenizer = T5Tokenizer(proto=with_extra_ids(open("spiece.model", "rb").read()))  # doctest: +SKIP
    >>> tokenizer("translate English to German: Hello")  # doctest: +SKIP
    """

    backbone_cls = EncoderDecoderBackbone

    def __init__(self, proto=None, **kwargs):
        self._add_special_token("</s>", "end_token")
        self._add_special_token("<pad>", "pad_token")
        # T5's decoder starts from pad: the "start token" of this convention.
        self._add_special_token("<pad>", "start_token")
        super().__init__(proto=proto, **kwargs)

    @property
    def bos_token_id(self):
        """T5 has no `<s>`."""
        return None

    def tokenize(self, inputs):
        """SentencePiece ids of `inputs` after `normalize_sentinels`, so ids equal
        `transformers`' `T5TokenizerFast` ids, sentinels included."""
        import tensorflow as tf

        if not isinstance(inputs, (tf.Tensor, tf.RaggedTensor)):
            inputs = tf.convert_to_tensor(inputs, tf.string)
        return super().tokenize(normalize_sentinels(inputs))

    def detokenize(self, inputs):
        """Text of `inputs`; ids past the SentencePiece vocabulary (T5's embedding has more
        rows, 32,128, than its 32,100 tokens) are dropped, as transformers decodes them to ''."""
        import tensorflow as tf

        ids = inputs
        if not isinstance(ids, (tf.Tensor, tf.RaggedTensor)):
            ids = tf.ragged.constant(ids) if isinstance(ids, list) and ids and isinstance(ids[0], list) \
                else tf.convert_to_tensor(ids)
        ids = tf.cast(ids, "int32")
        if isinstance(ids, tf.RaggedTensor) or ids.shape.rank == 2:
            ids = tf.ragged.boolean_mask(ids, ids < self.vocabulary_size())
        elif ids.shape.rank == 1:
            ids = tf.boolean_mask(ids, ids < self.vocabulary_size())
        return super().detokenize(ids)

    def sentinel_id(self, n):
        """Id of `<extra_id_{n}>`."""
        return self.token_to_id(f"<extra_id_{n}>")


@keras.saving.register_keras_serializable(package="massivetext_tf")
class T5Seq2SeqLMPreprocessor(EncoderDecoderSeq2SeqLMPreprocessor):
    """`EncoderDecoderSeq2SeqLMPreprocessor` with a `T5Tokenizer`: encoder `tokens + [</s>]`,
    decoder input `[<pad>] + target` (T5's decoder start), labels `target + [</s>]`;
    `generate_preprocess` leaves the decoder prompt open (`[<pad>] + prompt`).
    """

    tokenizer_cls = T5Tokenizer
