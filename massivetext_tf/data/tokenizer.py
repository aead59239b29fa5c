"""SentencePiece tokenizers: training from curated text, loading, special ids.

Every tokenizer trained here follows the project's token-id contract (docs/architecture.md):
`pad = 0`, `eos = 1` (`</s>`), `bos = 2` (`<s>`), `unk = 3` (`<unk>`), byte fallback on, and
optional span-corruption sentinels `<extra_id_0>` ... `<extra_id_{N-1}>` as user-defined pieces.

Defaults follow Gopher/Chinchilla: a 32,000-piece vocabulary and no NFKC normalization
(`normalization="identity"`). Together with byte fallback, `split_digits`,
`allow_whitespace_only_pieces`, `remove_extra_whitespaces=False` and no dummy prefix, this makes
`decode(encode(text)) == text` for any UTF-8 text (tabs, runs of spaces, newlines, CJK, emoji).
A newline is its own user-defined piece so that line structure (code, verse) costs one token.

Example:
```python
from massivetext_tf.data import tokenizer
tokenizer.train_tokenizer("tok.model", texts=["some text", "more text"], vocab_size=500)
tok = tokenizer.load_keras_tokenizer("tok.model")   # keras_hub SentencePieceTokenizer
```
"""
from __future__ import annotations

import hashlib
import heapq
import io
import logging
import os
from typing import Iterable, Iterator, Mapping, Sequence

import tensorflow as tf

from massivetext_tf import io as massivetext_io
from massivetext_tf.data.source_args import (  # noqa: F401  (re-exported: flag choices)
    DEFAULT_VOCAB_SIZE, MODEL_TYPES, NORMALIZATIONS)

logger = logging.getLogger(__name__)

PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3
PAD_PIECE, EOS_PIECE, BOS_PIECE, UNK_PIECE = "<pad>", "</s>", "<s>", "<unk>"
NEWLINE_PIECE = "\n"
SENTINEL_TEMPLATE = "<extra_id_{}>"


def sentinel_piece(i: int) -> str:
    return SENTINEL_TEMPLATE.format(i)


def _stable_hash(*parts: str) -> int:
    """64-bit hash that is stable across processes and machines (unlike `hash()`)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "big")


def parse_sample(value: str, *, flag: str = "--sample") -> float | int:
    """Parses a per-source sample spec: a fraction in (0, 1] (has a '.') or a document count."""
    text = str(value).strip()
    try:
        if "." in text or "e" in text.lower():
            frac = float(text)
            if not 0.0 < frac <= 1.0:
                raise ValueError
            return frac
        count = int(text)
        if count < 1:
            raise ValueError
        return count
    except ValueError:
        raise ValueError(
            f"{flag}: {value!r} is neither a fraction in (0, 1] (e.g. 0.25) nor a positive "
            "document count (e.g. 1000)") from None


def sample_documents(docs: Iterable, spec: float | int | None, *, seed: int = 0,
                     key=lambda d: f"{d.source}\x00{d.id}") -> Iterator:
    """Deterministic per-source sample.

    A float keeps each document whose stable hash falls below the fraction; an int keeps the
    `spec` documents with the smallest hashes (a uniform sample without replacement), in input
    order. The choice depends only on the document keys and `seed`, never on timing.
    """
    if spec is None:
        yield from docs
        return
    if isinstance(spec, float):
        limit = spec * 2.0**64
        for d in docs:
            if _stable_hash(str(seed), key(d)) < limit:
                yield d
        return
    heap: list[tuple[int, int, object]] = []  # max-heap on hash via negation
    for order, d in enumerate(docs):
        item = (-_stable_hash(str(seed), key(d)), order, d)
        if len(heap) < spec:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    for _, _, d in sorted(heap, key=lambda t: t[1]):
        yield d


def training_sentences(texts: Iterable[str], *, max_sentence_length: int = 16384
                       ) -> Iterator[str]:
    """Splits documents into the line-sized 'sentences' SentencePiece trains on.

    Newlines are a user-defined piece, so they are not needed inside training sentences. Lines
    longer than `max_sentence_length` bytes are cut into pieces rather than silently dropped by
    the trainer.
    """
    for text in texts:
        for line in text.split("\n"):
            if not line.strip():
                continue
            raw = line.encode("utf-8", "replace")
            if len(raw) <= max_sentence_length:
                yield line
                continue
            step = max(1, max_sentence_length // 4)  # chars are <= 4 UTF-8 bytes
            for i in range(0, len(line), step):
                yield line[i:i + step]


def train_tokenizer(
    output_path: str,
    texts: Iterable[str] | None = None,
    *,
    sources: Sequence | None = None,
    sample: Mapping[str, float | int] | None = None,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    model_type: str = "unigram",
    normalization: str = "identity",
    num_sentinels: int = 0,
    character_coverage: float = 0.9995,
    input_sentence_size: int = 0,
    max_sentence_length: int = 16384,
    seed: int = 0,
    on_error: str = "skip",
    num_threads: int | None = None,
    hard_vocab_limit: bool = True,
    on_skip=None,
) -> dict:
    """Trains a SentencePiece model and writes it to `output_path` (any tf.io.gfile path).

    Args:
        output_path: where the `.model` file is written (local path or `gs://...`).
        texts: an iterable of documents. Either this or `sources`.
        sources: `SourceSpec`s (massivetext_tf.data.curate) read with `read_documents`, in order.
        sample: per-source sampling, `{source_name: fraction_or_count}` (see `sample_documents`).
        vocab_size: number of pieces (32,000 in Gopher/Chinchilla).
        model_type: "unigram" or "bpe".
        normalization: "identity" (Chinchilla: no NFKC) or a SentencePiece rule like "nfkc".
        num_sentinels: adds `<extra_id_0>` ... pieces for span corruption.
        character_coverage: SentencePiece's character coverage; rarer characters use bytes.
        input_sentence_size: if > 0, SentencePiece samples this many training lines.
        max_sentence_length: longest training line in bytes (longer lines are cut).
        seed: seed of the per-source sampling.
        on_error: "skip" or "raise", passed to `read_documents`: an unreadable file or line is
            counted (in `skipped` of the result, by `read:<rule>`) and skipped, or stops
            training with a one-line `ReadError` (a ValueError) naming the file and line.
        num_threads: trainer threads (defaults to the CPU count).
        hard_vocab_limit: if False, a too-large `vocab_size` for a tiny corpus shrinks instead of
            failing.
        on_skip: called with the one-line message of each unreadable unit skipped (the same
            format as prepare_data's `--on-error raise` error).

    Returns:
        A dict with `path`, `vocabulary_size`, `documents`, `sentences`, per-source document
        counts, `skipped` (unreadable units by `read:<rule>`) and the special ids.
    """
    import sentencepiece as spm

    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type={model_type!r}: expected one of {MODEL_TYPES}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r}: expected one of {NORMALIZATIONS}")
    if (texts is None) == (sources is None):
        raise ValueError("train_tokenizer: pass exactly one of `texts` or `sources`")
    if num_sentinels < 0:
        raise ValueError(f"num_sentinels={num_sentinels}: must be >= 0")
    sample = dict(sample or {})
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {}
    if sources is not None:
        from massivetext_tf.data.curate import list_files

        names = [s.name for s in sources]
        unknown = sorted(set(sample) - set(names))
        if unknown:
            raise ValueError(f"--sample names unknown source(s) {unknown}; sources are {names}")
        for spec in sources:
            list_files(spec)   # a pattern matching nothing fails here, not inside the trainer
        texts = _source_texts(sources, sample, counts, skipped, seed=seed, on_error=on_error,
                              on_skip=on_skip)
    else:
        texts = _count_texts(texts, counts)

    n_sentences = [0]
    failure: list[BaseException] = []

    def sentence_iterator():
        # An exception raised in here would reach the caller wrapped in SentencePiece's
        # RuntimeError; it is kept and re-raised as itself once the trainer returns.
        try:
            for s in training_sentences(texts, max_sentence_length=max_sentence_length):
                n_sentences[0] += 1
                yield s
        except Exception as e:  # noqa: BLE001 - re-raised below
            failure.append(e)

    user_symbols = [NEWLINE_PIECE] + [sentinel_piece(i) for i in range(num_sentinels)]
    model = io.BytesIO()
    min_vocab = 256 + 4 + len(user_symbols)
    if vocab_size <= min_vocab:
        raise ValueError(f"vocab_size={vocab_size} is too small: byte fallback alone needs 256 "
                         f"byte pieces + 4 special + {len(user_symbols)} user-defined pieces "
                         f"(> {min_vocab})")
    # SentencePiece seeds its sampler from std::random_device unless told: fix it, so the
    # same inputs give the same model bytes (input_sentence_size > 0 samples lines).
    spm.set_random_generator_seed(seed + 1)
    try:
        _train(spm, model, sentence_iterator(), user_symbols, vocab_size=vocab_size,
               model_type=model_type, character_coverage=character_coverage,
               normalization=normalization, max_sentence_length=max_sentence_length,
               input_sentence_size=input_sentence_size, hard_vocab_limit=hard_vocab_limit,
               num_threads=num_threads)
    except RuntimeError as e:
        if failure:
            raise failure[0] from None
        if n_sentences[0] == 0:
            raise ValueError("train_tokenizer: no training text (all inputs empty or skipped"
                             f"{_skipped_note(skipped)})") from None
        raise ValueError(f"SentencePiece training failed: {' '.join(str(e).split())}") from None
    if failure:
        raise failure[0]
    if n_sentences[0] == 0:
        raise ValueError("train_tokenizer: no training text (all inputs empty or skipped"
                         f"{_skipped_note(skipped)})")
    proto = model.getvalue()
    massivetext_io.atomic_write(output_path, proto)
    proc = spm.SentencePieceProcessor(model_proto=proto)
    check_special_ids(proc, name=output_path)
    return {
        "path": output_path,
        "vocabulary_size": proc.get_piece_size(),
        "documents": sum(counts.values()),
        "sources": counts,
        "sentences": n_sentences[0],
        "skipped": dict(sorted(skipped.items())),
        "pad_id": PAD_ID, "eos_id": EOS_ID, "bos_id": BOS_ID, "unk_id": UNK_ID,
        "num_sentinels": num_sentinels,
        "sha256": hashlib.sha256(proto).hexdigest(),
    }


def _train(spm, model, sentences, user_symbols, *, vocab_size, model_type, character_coverage,
           normalization, max_sentence_length, input_sentence_size, hard_vocab_limit,
           num_threads):
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences,
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        byte_fallback=True,
        normalization_rule_name=normalization,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        split_by_whitespace=True,
        max_sentence_length=max_sentence_length,
        input_sentence_size=input_sentence_size,
        shuffle_input_sentence=True,
        hard_vocab_limit=hard_vocab_limit,
        pad_id=PAD_ID, eos_id=EOS_ID, bos_id=BOS_ID, unk_id=UNK_ID,
        pad_piece=PAD_PIECE, eos_piece=EOS_PIECE, bos_piece=BOS_PIECE, unk_piece=UNK_PIECE,
        user_defined_symbols=user_symbols,
        num_threads=num_threads or os.cpu_count() or 1,
        minloglevel=2,
    )


def _count_texts(texts, counts):
    for t in texts:
        counts["texts"] = counts.get("texts", 0) + 1
        yield t


def _skipped_note(skipped: Mapping[str, int]) -> str:
    if not skipped:
        return ""
    return f"; skipped {sum(skipped.values())} unreadable: " + ", ".join(
        f"{rule} {n}" for rule, n in sorted(skipped.items()))


def _source_texts(sources, sample, counts, skipped, *, seed, on_error, on_skip=None):
    from massivetext_tf.data.curate import read_documents

    def on_reject(doc, stage, rule):
        key = f"{stage}:{rule}"
        skipped[key] = skipped.get(key, 0) + 1
        if on_skip is not None:
            on_skip(doc.fields.get("error", f"{doc.id}: [{key}]"))

    for spec in sources:
        counts.setdefault(spec.name, 0)
        docs = read_documents(spec, on_error=on_error, on_reject=on_reject)
        for doc in sample_documents(docs, sample.get(spec.name), seed=seed):
            counts[spec.name] += 1
            yield doc.text


# ------------------------------------------------------------------------------------ loading

def read_model_proto(path_or_proto: str | bytes) -> bytes:
    """Returns the serialized model, reading it through tf.io.gfile if given a path."""
    if isinstance(path_or_proto, bytes):
        return path_or_proto
    if not tf.io.gfile.exists(path_or_proto):
        raise FileNotFoundError(f"tokenizer model not found: {path_or_proto}")
    with tf.io.gfile.GFile(path_or_proto, "rb") as f:
        return f.read()


def load_processor(path_or_proto: str | bytes):
    """A `sentencepiece.SentencePieceProcessor` for offline (Python) encoding."""
    import sentencepiece as spm

    proto = read_model_proto(path_or_proto)
    proc = spm.SentencePieceProcessor()
    try:
        proc.LoadFromSerializedProto(proto)
    except Exception as e:  # noqa: BLE001 - sentencepiece raises bare RuntimeError/OSError
        name = path_or_proto if isinstance(path_or_proto, str) else "<proto>"
        raise ValueError(f"{name}: not a SentencePiece model ({e})") from None
    return proc


def load_keras_tokenizer(path_or_proto: str | bytes, **kwargs):
    """keras-hub `SentencePieceTokenizer` (in-graph, tensorflow-text) for the model."""
    import keras_hub

    return keras_hub.tokenizers.SentencePieceTokenizer(
        proto=read_model_proto(path_or_proto), **kwargs)


def check_special_ids(proc, *, name: str = "tokenizer") -> None:
    """Raises ValueError if the model does not follow the pad/eos/bos/unk id contract."""
    got = {"pad": proc.pad_id(), "eos": proc.eos_id(), "bos": proc.bos_id(), "unk": proc.unk_id()}
    want = {"pad": PAD_ID, "eos": EOS_ID, "bos": BOS_ID, "unk": UNK_ID}
    if got != want:
        raise ValueError(f"{name}: special ids {got} do not match the contract {want}; "
                         "train it with massivetext train-tokenizer")


def sentinel_ids(path_or_proc, num: int | None = None) -> list[int]:
    """Ids of `<extra_id_0>`, `<extra_id_1>`, ... looked up by name.

    With `num=None` returns all sentinels the model has (stopping at the first missing one);
    otherwise exactly `num`, raising ValueError naming the missing piece.
    """
    proc = path_or_proc if hasattr(path_or_proc, "piece_to_id") else load_processor(path_or_proc)
    ids = []
    i = 0
    while num is None or i < num:
        piece = sentinel_piece(i)
        pid = proc.piece_to_id(piece)
        if pid == proc.unk_id() or proc.id_to_piece(pid) != piece:
            if num is None:
                break
            raise ValueError(f"tokenizer has no sentinel piece {piece!r} (needs {num}); "
                             "train it with --num-sentinels")
        ids.append(pid)
        i += 1
    return ids


def model_info(path_or_proto: str | bytes) -> dict:
    """The manifest's `tokenizer` entry (without `file`)."""
    proto = read_model_proto(path_or_proto)
    proc = load_processor(proto)
    return {
        "sha256": hashlib.sha256(proto).hexdigest(),
        "vocabulary_size": proc.get_piece_size(),
        "pad_id": proc.pad_id(), "eos_id": proc.eos_id(), "bos_id": proc.bos_id(),
        "unk_id": proc.unk_id(),
        "num_sentinels": len(sentinel_ids(proc)),
    }
