"""Causal LM task on `GopherBackbone`: logits head, loss, cached XLA `generate()`."""
import keras
from keras import ops
from keras_hub.models import CausalLM
from keras_hub.src.utils.tensor_utils import any_equal

from massivetext_tf.models import decoding
from massivetext_tf.models.decoder_only.backbone import GopherBackbone
from massivetext_tf.models.decoder_only.preprocessor import GopherCausalLMPreprocessor
from massivetext_tf.models.task_defaults import TaskDefaults


def with_segments(inputs):
    """Accept an explicit `segment_ids` key: it takes the place of `padding_mask`."""
    if isinstance(inputs, dict) and "segment_ids" in inputs:
        inputs = dict(inputs)
        inputs["padding_mask"] = inputs.pop("segment_ids")
        inputs.pop("positions", None)
    elif isinstance(inputs, dict) and "positions" in inputs:
        inputs = {k: v for k, v in inputs.items() if k != "positions"}
    return inputs


def generated_padding_mask(token_ids, prompt_mask, stop_token_ids):
    """Output mask of a generation: True up to and including the first stop token written
    after the prompt (everything when no stop tokens are given)."""
    if stop_token_ids is None:
        return ops.ones_like(token_ids, dtype="bool")
    end_locations = ops.cast(any_equal(token_ids, stop_token_ids, ops.logical_not(prompt_mask)), "int32")
    cumsum = ops.cast(ops.cumsum(end_locations, axis=-1), "int32")
    return ops.logical_not(ops.cast(cumsum - end_locations, "bool"))


def check_length(token_ids, max_sequence_length, field="token_ids"):
    """Reject (at trace time) sequences longer than the model's context window."""
    length = token_ids.shape[-1] if hasattr(token_ids, "shape") else None
    if length is not None and length > max_sequence_length:
        raise ValueError(
            f"`{field}` has length {length}, longer than the model's context "
            f"(`max_sequence_length={max_sequence_length}`). Shorten the input, or score it "
            "with a sliding window (massivetext_tf.models.scoring)."
        )


@keras.saving.register_keras_serializable(package="massivetext_tf")
class GopherCausalLM(TaskDefaults, CausalLM):
    """Decoder-only language model: `GopherBackbone` + tied output projection.

    A keras-hub `CausalLM`, so `compile()`, `fit()`, `generate()` with keras-hub samplers
    (greedy, top-k, top-p, beam, temperature), `save_to_preset()`, `enable_lora()` and
    `quantize()` work as for keras-hub's own models. `generate()` runs one XLA-compiled
    `while_loop` over a key/value cache allocated at full length.

    Args:
        backbone: a `GopherBackbone`.
        preprocessor: a `GopherCausalLMPreprocessor` or None (then inputs are token dicts).

    Example:
    >>> from massivetext_tf import models
    >>> lm = models.build("gopher_tiny")
    >>> out = lm.generate({"token_ids": keras.ops.ones((1, 8), "int32"),
    ...                    "padding_mask": keras.ops.array([[1, 1, 0, 0, 0, 0, 0, 0]])})
    """

    backbone_cls = GopherBackbone
    preprocessor_cls = GopherCausalLMPreprocessor

    def __init__(self, backbone, preprocessor=None, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        inputs = backbone.input
        hidden_states = backbone(inputs)
        outputs = backbone.token_embedding(hidden_states, reverse=True)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    def call(self, inputs, training=None, mask=None):
        inputs = with_segments(inputs)
        check_length(inputs["token_ids"], self.backbone.max_sequence_length)
        return super().call(inputs, training=training, mask=mask)

    def relative_tables(self, length):
        """Per-layer Transformer-XL tables for a cache of `length`, computed once per
        `generate()` call instead of once per decoded token."""
        if self.backbone.position_encoding != "relative":
            return [None] * self.backbone.num_layers
        return [layer.attention.relative_table(length) for layer in self.backbone.transformer_layers]

    def call_with_cache(self, token_ids, cache, cache_update_index, relative_tables=None):
        """Forward pass over `token_ids` written into `cache` at `cache_update_index`.

        Args:
            token_ids: int `[batch, length]`.
            cache: `[batch, num_layers, 2, max_length, num_heads, key_value_dim]`.
            cache_update_index: int or scalar tensor, position of `token_ids[:, 0]`.
            relative_tables: optional output of `relative_tables(max_length)`.

        Returns:
            `(logits, hidden_states, cache)`.
        """
        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        if backbone.position_embedding is not None:
            x = x + backbone.position_embedding(x, start_index=cache_update_index)
        x = backbone.embeddings_dropout(x)
        max_length = ops.shape(cache)[3]
        bias = None
        if backbone.position_bias is not None:
            bias = backbone.position_bias(x, key_length=max_length, query_offset=cache_update_index)
        tables = relative_tables or [None] * backbone.num_layers
        caches = []
        for i, layer in enumerate(backbone.transformer_layers):
            x, next_cache = layer(
                x,
                attention_bias=bias,
                cache=cache[:, i, ...],
                cache_update_index=cache_update_index,
                relative_table=tables[i],
            )
            caches.append(next_cache)
        cache = ops.stack(caches, axis=1)
        hidden_states = x = backbone.layer_norm(x)
        logits = backbone.token_embedding(x, reverse=True)
        return logits, hidden_states, cache

    def _build_cache(self, token_ids, relative_tables=None):
        """An empty cache at the full length of `token_ids`, seeded with one forward pass."""
        backbone = self.backbone
        batch_size, max_length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        shape = [batch_size, backbone.num_layers, 2, max_length, backbone.num_heads, backbone.key_value_dim]
        cache = ops.zeros(shape, dtype=self.compute_dtype)
        _, hidden_states, cache = self.call_with_cache(token_ids, cache, 0, relative_tables)
        return hidden_states, cache

    def decoding_next(self, relative_tables=None):
        """keras-hub's `next(tokens, cache, index) -> (logits, hidden_states, cache)` for this
        model: writes the token at `index - 1` into `cache` and returns the squeezed logits
        and hidden state of position `index`. `tokens` is the whole `[batch, length]` buffer,
        or `[batch, 1]` holding just the token at `index - 1` (the LiteRT `decode` signature).

        The one step of every decoding loop: keras-hub's samplers (`generate()`),
        `massivetext_tf.models.decoding.decode` (SavedModel `generate`, `greedy_generate`) and
        the LiteRT export.
        """

        def next(tokens, cache, index):
            cache_update_index = index - 1
            if tokens.shape[1] != 1:
                tokens = ops.take(tokens, ops.reshape(cache_update_index, (1,)), axis=1)
            logits, hidden_states, cache = self.call_with_cache(
                tokens, cache, cache_update_index, relative_tables
            )
            # `[:, 0]`, not a squeeze: inside a relaxed-shape tf.function the length is unknown.
            return logits[:, 0, :], hidden_states[:, 0, :], cache

        return next

    def generate_step(self, inputs, stop_token_ids=None):
        """One compilable generation call for a batch of `{"token_ids", "padding_mask"}`."""
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        check_length(token_ids, self.backbone.max_sequence_length)
        tables = self.relative_tables(ops.shape(token_ids)[1])
        hidden_states, cache = self._build_cache(token_ids, tables)
        row_lengths = ops.sum(ops.cast(padding_mask, "int32"), axis=-1)
        index = ops.min(row_lengths)

        token_ids = self.sampler(
            next=self.decoding_next(tables),
            prompt=token_ids,
            cache=cache,
            index=index,
            mask=padding_mask,
            stop_token_ids=stop_token_ids,
            hidden_states=hidden_states,
            model=self,
        )
        padding_mask = generated_padding_mask(token_ids, padding_mask, stop_token_ids)
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def generate_uncached(self, inputs, max_new_tokens):
        """Greedy decoding by full recomputation (no cache): the reference every cached
        decoding loop is tested against, and the baseline of the decoding benchmark.

        Each row continues after its own prompt (as `generate()` does) for
        `max_new_tokens` steps or until the padded length is full.
        """
        token_ids = ops.convert_to_tensor(inputs["token_ids"], "int32")
        padding_mask = ops.cast(inputs["padding_mask"], "int32")
        run = decoding.compiled_method(self, "_uncached")
        return run(token_ids, padding_mask, ops.convert_to_tensor(max_new_tokens, "int32"))

    def _uncached(self, token_ids, padding_mask, max_new_tokens):
        lengths = ops.sum(padding_mask, axis=-1)
        ones = ops.ones_like(padding_mask)
        return decoding.recompute_greedy(
            lambda token_ids: self({"token_ids": token_ids, "padding_mask": ones}),
            token_ids, lengths, max_new_tokens,
        )
