"""Seq2seq LM task on `EncoderDecoderBackbone`: logits head, loss, cached XLA `generate()`."""
import keras
from keras import ops
from keras_hub.models import Seq2SeqLM

from massivetext_tf.models import decoding
from massivetext_tf.models.decoder_only.causal_lm import generated_padding_mask
from massivetext_tf.models.task_defaults import TaskDefaults

from massivetext_tf.models.encoder_decoder.backbone import EncoderDecoderBackbone
from massivetext_tf.models.encoder_decoder.preprocessor import EncoderDecoderSeq2SeqLMPreprocessor

_SEGMENT_KEYS = {
    "encoder_segment_ids": "encoder_padding_mask",
    "decoder_segment_ids": "decoder_padding_mask",
}


def with_segments(inputs):
    """Accept explicit `encoder_segment_ids` / `decoder_segment_ids` keys: each takes the
    place of the matching padding mask (segment ids are a padding mask with 1..k)."""
    if not isinstance(inputs, dict) or not set(inputs) & (set(_SEGMENT_KEYS) | {"positions"}):
        return inputs
    inputs = dict(inputs)
    inputs.pop("positions", None)
    for key, mask_key in _SEGMENT_KEYS.items():
        if key in inputs:
            inputs[mask_key] = inputs.pop(key)
    return inputs


@keras.saving.register_keras_serializable(package="massivetext_tf")
class EncoderDecoderSeq2SeqLM(TaskDefaults, Seq2SeqLM):
    """Encoder-decoder language model: `EncoderDecoderBackbone` + output projection
    (`backbone.token_logits`: tied or untied, with T5's rescale when configured).

    A keras-hub `Seq2SeqLM`, so `compile()`, `fit()` and `generate()` with keras-hub
    samplers (greedy, top-k, top-p, beam, temperature) work as for keras-hub's T5 and BART.
    `generate()` encodes once, computes every decoder layer's cross-attention keys/values
    once, and runs one XLA-compiled `while_loop` over a self-attention cache allocated at
    the full decoder length.

    Args:
        backbone: an `EncoderDecoderBackbone`.
        preprocessor: an `EncoderDecoderSeq2SeqLMPreprocessor` or None (then inputs are
            keras-hub's token dicts).

    Example:
    >>> from massivetext_tf import models
    >>> lm = models.build("t5_tiny")
    >>> ids = keras.ops.ones((1, 8), "int32")
    >>> out = lm.generate({"encoder_token_ids": ids, "encoder_padding_mask": ids,
    ...                    "decoder_token_ids": ids * 2,
    ...                    "decoder_padding_mask": keras.ops.array([[1, 0, 0, 0, 0, 0, 0, 0]])},
    ...                   stop_token_ids=None)
    """

    backbone_cls = EncoderDecoderBackbone
    preprocessor_cls = EncoderDecoderSeq2SeqLMPreprocessor

    def __init__(self, backbone, preprocessor=None, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        inputs = backbone.input
        hidden_states = backbone(inputs)["decoder_sequence_output"]
        outputs = backbone.token_logits(hidden_states)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    def call(self, inputs, training=None, mask=None):
        return super().call(with_segments(inputs), training=training, mask=mask)

    # === Cached decoding (keras-hub's BART/T5 pattern) ===

    def call_encoder(self, token_ids, padding_mask):
        """Encoder forward pass: `[batch, length, hidden_dim]` after the final norm."""
        backbone = self.backbone
        x = backbone.encoder_embed(token_ids, segments=padding_mask)
        bias = None
        if backbone.encoder_position_bias is not None:
            bias = backbone.encoder_position_bias(x)
        for layer in backbone.encoder_transformer_layers:
            x = layer(x, segments=padding_mask, attention_bias=bias)
        return backbone.encoder_layer_norm(x)

    def relative_tables(self, length):
        """Per-decoder-layer Transformer-XL tables for a self-attention cache of `length`,
        computed once per `generate()` call instead of once per decoded token."""
        layers = self.backbone.decoder_transformer_layers
        if self.backbone.position_encoding != "relative":
            return [None] * len(layers)
        return [layer.attention.relative_table(length) for layer in layers]

    def cross_attention_key_values(self, encoder_hidden_states):
        """Every decoder layer's cross-attention keys/values of the encoder output:
        `[batch, num_decoder_layers, 2, encoder_length, num_heads, key_value_dim]`."""
        caches = []
        for layer in self.backbone.decoder_transformer_layers:
            key, value = layer.cross_attention_layer.key_values(encoder_hidden_states)
            caches.append(ops.stack((key, value), axis=1))
        return ops.stack(caches, axis=1)

    def call_decoder_with_cache(
        self,
        encoder_hidden_states,
        encoder_padding_mask,
        decoder_token_ids,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        cross_attention_cache_update_index=None,
        relative_tables=None,
    ):
        """Decoder forward pass over `decoder_token_ids` with key/value caches.

        Args:
            encoder_hidden_states: float `[batch, encoder_length, hidden_dim]`, the output
                of `call_encoder()`.
            encoder_padding_mask: int/bool `[batch, encoder_length]` (0 = padding).
            decoder_token_ids: int `[batch, length]`, the tokens at positions
                `self_attention_cache_update_index ...`.
            self_attention_cache: `[batch, num_decoder_layers, 2, max_length, num_heads,
                key_value_dim]`.
            self_attention_cache_update_index: int or scalar int tensor, position of
                `decoder_token_ids[:, 0]` (where its keys/values are written).
            cross_attention_cache: `[batch, num_decoder_layers, 2, encoder_length,
                num_heads, key_value_dim]`.
            cross_attention_cache_update_index: `0` to compute the cross-attention
                keys/values from `encoder_hidden_states` and write them into the cache
                (once per `generate()`), or `None` to use the cache as is.
            relative_tables: optional output of `relative_tables(max_length)`.

        Returns:
            `(logits, hidden_states, self_attention_cache, cross_attention_cache)`.
        """
        backbone = self.backbone
        index = self_attention_cache_update_index
        if self_attention_cache is None or index is None:
            raise ValueError(
                "`call_decoder_with_cache` needs a `self_attention_cache` and a "
                "`self_attention_cache_update_index`."
            )
        if cross_attention_cache is None:
            cross_attention_cache = self.cross_attention_key_values(encoder_hidden_states)
        elif cross_attention_cache_update_index is not None:
            cross_attention_cache = ops.slice_update(
                cross_attention_cache,
                [0, 0, 0, cross_attention_cache_update_index, 0, 0],
                ops.cast(self.cross_attention_key_values(encoder_hidden_states), cross_attention_cache.dtype),
            )
        x = backbone.decoder_embed(decoder_token_ids, start_index=index)
        max_length = ops.shape(self_attention_cache)[3]
        bias = None
        if backbone.decoder_position_bias is not None:
            bias = backbone.decoder_position_bias(x, key_length=max_length, query_offset=index)
        tables = relative_tables or [None] * backbone.num_decoder_layers
        self_caches = []
        for i, layer in enumerate(backbone.decoder_transformer_layers):
            x, next_cache, _ = layer(
                x,
                attention_bias=bias,
                cache=self_attention_cache[:, i, ...],
                cache_update_index=index,
                relative_table=tables[i],
                encoder_outputs=encoder_hidden_states,
                encoder_segments=encoder_padding_mask,
                cross_attention_cache=cross_attention_cache[:, i, ...],
            )
            self_caches.append(next_cache)
        self_attention_cache = ops.stack(self_caches, axis=1)
        hidden_states = backbone.decoder_layer_norm(x)
        logits = backbone.token_logits(hidden_states)
        return logits, hidden_states, self_attention_cache, cross_attention_cache

    # Every task exposes `call_with_cache` (docs/architecture.md); for this task it is the
    # decoder's cached pass, under keras-hub's Seq2SeqLM name as well.
    call_with_cache = call_decoder_with_cache

    def _initialize_cache(self, encoder_token_ids, decoder_token_ids):
        """Zero self-attention and cross-attention caches at full length."""
        backbone = self.backbone
        batch_size = ops.shape(encoder_token_ids)[0]
        shape = [
            batch_size,
            backbone.num_decoder_layers,
            2,
            ops.shape(decoder_token_ids)[1],
            backbone.num_heads,
            backbone.key_value_dim,
        ]
        self_attention_cache = ops.zeros(shape, dtype=self.compute_dtype)
        shape[3] = ops.shape(encoder_token_ids)[1]
        cross_attention_cache = ops.zeros(shape, dtype=self.compute_dtype)
        return self_attention_cache, cross_attention_cache

    def _build_cache(self, encoder_token_ids, encoder_padding_mask, decoder_token_ids, relative_tables=None):
        """Encode once, compute the cross-attention cache once, and seed the
        self-attention cache with one decoder pass over the whole (padded) prompt.

        Returns:
            `(hidden_states, encoder_hidden_states, self_attention_cache,
            cross_attention_cache)`.
        """
        encoder_hidden_states = self.call_encoder(encoder_token_ids, encoder_padding_mask)
        self_attention_cache, cross_attention_cache = self._initialize_cache(
            encoder_token_ids, decoder_token_ids
        )
        _, hidden_states, self_attention_cache, cross_attention_cache = self.call_decoder_with_cache(
            encoder_hidden_states=encoder_hidden_states,
            encoder_padding_mask=encoder_padding_mask,
            decoder_token_ids=decoder_token_ids,
            self_attention_cache=self_attention_cache,
            self_attention_cache_update_index=0,
            cross_attention_cache=cross_attention_cache,
            cross_attention_cache_update_index=0,
            relative_tables=relative_tables,
        )
        return hidden_states, encoder_hidden_states, self_attention_cache, cross_attention_cache

    def initial_decoding_cache(self, encoder_token_ids, encoder_padding_mask, length):
        """The cache `decoding_next` threads, before any decoder token: a zero self-attention
        cache of `length` positions, the encoder output and mask, and the cross-attention
        keys/values (encoded once)."""
        backbone = self.backbone
        encoder_hidden_states = self.call_encoder(encoder_token_ids, encoder_padding_mask)
        shape = [
            ops.shape(encoder_token_ids)[0],
            backbone.num_decoder_layers,
            2,
            length,
            backbone.num_heads,
            backbone.key_value_dim,
        ]
        return (
            ops.zeros(shape, dtype=self.compute_dtype),
            encoder_hidden_states,
            encoder_padding_mask,
            self.cross_attention_key_values(encoder_hidden_states),
        )

    def decoding_next(self, relative_tables=None):
        """keras-hub's `next(tokens, cache, index) -> (logits, hidden_states, cache)` for the
        decoder: writes the decoder token at `index - 1` into the self-attention cache and
        returns the squeezed logits and hidden state of position `index`.

        `cache` is `(self_attention_cache, encoder_hidden_states, encoder_padding_mask,
        cross_attention_cache)` (see `initial_decoding_cache`): the encoder tensors ride in
        it so that beam search expands them with it. The one step of keras-hub's samplers
        (`generate()`) and of `massivetext_tf.models.decoding.decode` (SavedModel `generate`,
        `greedy_generate`).
        """

        def next(tokens, cache, index):
            cache_update_index = index - 1
            if tokens.shape[1] != 1:
                tokens = ops.take(tokens, ops.reshape(cache_update_index, (1,)), axis=1)
            self_cache, encoder_states, encoder_mask, cross_cache = cache
            logits, hidden_states, self_cache, _ = self.call_decoder_with_cache(
                encoder_hidden_states=encoder_states,
                encoder_padding_mask=encoder_mask,
                decoder_token_ids=tokens,
                self_attention_cache=self_cache,
                self_attention_cache_update_index=cache_update_index,
                cross_attention_cache=cross_cache,
                cross_attention_cache_update_index=None,
                relative_tables=relative_tables,
            )
            return (
                logits[:, 0, :],
                hidden_states[:, 0, :],
                (self_cache, encoder_states, encoder_mask, cross_cache),
            )

        return next

    def generate_step(self, inputs, stop_token_ids=None):
        """One compilable generation call for a batch of keras-hub encoder-decoder dicts."""
        inputs = with_segments(inputs)
        encoder_token_ids = inputs["encoder_token_ids"]
        encoder_padding_mask = inputs["encoder_padding_mask"]
        decoder_token_ids = inputs["decoder_token_ids"]
        decoder_padding_mask = inputs["decoder_padding_mask"]
        tables = self.relative_tables(ops.shape(decoder_token_ids)[1])
        hidden_states, encoder_hidden_states, self_attention_cache, cross_attention_cache = self._build_cache(
            encoder_token_ids, encoder_padding_mask, decoder_token_ids, tables
        )
        row_lengths = ops.sum(ops.cast(decoder_padding_mask, "int32"), axis=-1)
        index = ops.min(row_lengths)

        decoder_token_ids = self.sampler(
            next=self.decoding_next(tables),
            prompt=decoder_token_ids,
            cache=(self_attention_cache, encoder_hidden_states, encoder_padding_mask, cross_attention_cache),
            index=index,
            mask=decoder_padding_mask,
            stop_token_ids=stop_token_ids,
            hidden_states=hidden_states,
            model=self,
        )
        decoder_padding_mask = generated_padding_mask(decoder_token_ids, decoder_padding_mask, stop_token_ids)
        return {"decoder_token_ids": decoder_token_ids, "decoder_padding_mask": decoder_padding_mask}

    def generate_uncached(self, inputs, max_new_tokens):
        """Greedy decoding by full recomputation (encoder and decoder every step, no cache):
        the reference every cached decoding loop is tested against.

        Each row continues after its own decoder prompt (as `generate()` does) for
        `max_new_tokens` steps or until the padded decoder length is full.

        Returns:
            int32 `[batch, decoder_length]` decoder token ids.
        """
        inputs = with_segments(inputs)
        run = decoding.compiled_method(self, "_uncached")
        return run(
            ops.convert_to_tensor(inputs["encoder_token_ids"], "int32"),
            ops.cast(inputs["encoder_padding_mask"], "int32"),
            ops.convert_to_tensor(inputs["decoder_token_ids"], "int32"),
            ops.cast(inputs["decoder_padding_mask"], "int32"),
            ops.convert_to_tensor(max_new_tokens, "int32"),
        )

    def _uncached(self, encoder_token_ids, encoder_padding_mask, token_ids, padding_mask, max_new_tokens):
        lengths = ops.sum(ops.cast(padding_mask > 0, "int32"), axis=-1)
        ones = ops.ones_like(padding_mask)

        def logits_fn(token_ids):
            return self(
                {
                    "encoder_token_ids": encoder_token_ids,
                    "encoder_padding_mask": encoder_padding_mask,
                    "decoder_token_ids": token_ids,
                    "decoder_padding_mask": ones,
                }
            )

        return decoding.recompute_greedy(logits_fn, token_ids, lengths, max_new_tokens)
