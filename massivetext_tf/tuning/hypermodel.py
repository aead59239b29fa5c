"""A keras-tuner `HyperModel` over the model zoo: hyperparameters -> `ExperimentConfig`.

    space = space_lib.parse_space({"model.num_layers": "int:1:2",
                                   "optimizer.peak_lr": "float:1e-4:1e-2:log"})
    hm = ZooHyperModel(base_cfg, space, budget_tokens=200_000)
    hp = keras_tuner.HyperParameters()
    hm.declare_hyperparameters(hp)
    cfg = hm.config_for(hp, model_dir="runs/t0")      # what a trial trains
    model = hm.build(hp)                                # a compiled GopherCausalLM

The token budget decides the number of optimizer steps of a trial:
`train_steps = ceil(budget_tokens / (global_batch_size * sequence_length))`, so trials of
different batch sizes see the same number of training tokens (to within one batch). Under
Hyperband a trial at `tuner/epochs = e` gets `budget_tokens * e / max_epochs` tokens.
"""
from __future__ import annotations

import copy
import functools
import math

import keras_tuner

from massivetext_tf.tuning import space as space_lib

HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round",
                  "tuner/trial_id")


def tokens_per_step(cfg) -> int:
    return int(cfg.data.global_batch_size) * int(cfg.data.sequence_length)


def steps_for_tokens(tokens: float, cfg) -> int:
    """Optimizer steps that consume at least `tokens` training tokens (at least one)."""
    if tokens is None or tokens <= 0:
        raise ValueError(f"--budget-tokens: must be a positive number of tokens, got {tokens!r}")
    return max(1, int(math.ceil(float(tokens) / tokens_per_step(cfg))))


def default_budget_tokens(cfg) -> int:
    """The base config's own budget: trainer.train_steps x global batch x sequence length."""
    return int(cfg.trainer.train_steps) * tokens_per_step(cfg)


def model_config(cfg) -> dict:
    """The zoo config a run of `cfg` builds (preset + overrides, vocabulary of the data)."""
    from massivetext_tf import models
    from massivetext_tf.training import data as data_lib

    overrides = dict(cfg.model.overrides or {})
    tok = data_lib.tokenizer_path(cfg)
    if tok and "vocabulary_size" not in overrides:
        overrides["vocabulary_size"] = _tokenizer_vocabulary_size(tok)
    if cfg.model.preset == "standin_gpt2":
        raise ValueError("model.preset: standin_gpt2 is not a zoo model; tune a zoo preset")
    return models.resolve_config(cfg.model.preset, **overrides)


@functools.lru_cache(maxsize=16)
def _tokenizer_vocabulary_size(path: str) -> int:
    from massivetext_tf import models

    return int(models._tokenizer_vocabulary_size(path))


def analytic_params(cfg) -> int:
    from massivetext_tf import models

    return int(models.count_params(model_config(cfg)))


class ZooHyperModel(keras_tuner.HyperModel):
    """Search space + base experiment config -> per-trial experiment configs and models.

    Args:
        base_config: the `ExperimentConfig` every trial starts from.
        space: `{target: ParamSpec}` (see `massivetext_tf.tuning.space`).
        budget_tokens: training tokens of a full-budget trial (default: the base config's
            train_steps x global batch x sequence length).
        max_epochs: Hyperband's `max_epochs`; a trial at `tuner/epochs = e` trains on
            `budget_tokens * e / max_epochs` tokens.
    """

    def __init__(self, base_config, space: dict, *, budget_tokens: float | None = None,
                 max_epochs: int | None = None, name: str = "zoo", tunable: bool = True):
        super().__init__(name=name, tunable=tunable)
        self.base_config = copy.deepcopy(base_config)
        self.space = dict(space)
        self.budget_tokens = int(budget_tokens or default_budget_tokens(base_config))
        if self.budget_tokens <= 0:
            raise ValueError("--budget-tokens: must be > 0")
        self.max_epochs = max_epochs

    # -- keras-tuner interface ------------------------------------------------------------------

    def declare_hyperparameters(self, hp):
        for spec in self.space.values():
            space_lib.declare(hp, spec)

    def build(self, hp):
        """A compiled zoo model for `hp` (AdamW with the trial's schedule, token cross-entropy)."""
        import keras

        from massivetext_tf.training import optimizer as opt_lib
        from massivetext_tf.training.task import PretrainTask

        cfg = self.config_for(hp)
        model = PretrainTask(cfg).build_model()
        model.compile(
            optimizer=opt_lib.build_optimizer(cfg.optimizer, train_steps=cfg.trainer.train_steps,
                                              model=model),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[],
        )
        return model

    # -- hyperparameters -> experiment config ---------------------------------------------------

    def values(self, hp) -> dict:
        """`{target: value}` of the search dimensions for `hp` (declaring missing ones)."""
        return {name: space_lib.declare(hp, spec) for name, spec in self.space.items()}

    def trial_tokens(self, hp) -> int:
        values = getattr(hp, "values", {}) or {}
        if self.max_epochs and "tuner/epochs" in values:
            return max(1, int(round(self.budget_tokens * values["tuner/epochs"] / self.max_epochs)))
        return self.budget_tokens

    def config_for(self, hp, *, model_dir: str | None = None, tokens: int | None = None):
        """The `ExperimentConfig` of one trial (validated; errors name the search target)."""
        from massivetext_tf import models
        from massivetext_tf.training import config as config_lib

        cfg = copy.deepcopy(self.base_config)
        values = self.values(hp)
        overrides = dict(cfg.model.overrides or {})
        for name, value in values.items():
            if name in space_lib.DERIVED:
                continue
            parts = name.split(".")
            if parts[0] == "model" and len(parts) == 2 and parts[1] in space_lib.MODEL_FIELDS:
                overrides[parts[1]] = value
            else:
                config_lib.set_value(cfg, name, value, flag=f"search_space.{name}")
                if name.startswith("model.overrides."):
                    overrides = dict(cfg.model.overrides)
        try:
            overrides = self._derived_widths(cfg, values, overrides)
        except ValueError as e:
            raise ValueError(f"search space point {values}: {e}") from None
        cfg.model.overrides = overrides
        cfg.trainer.train_steps = steps_for_tokens(tokens or self.trial_tokens(hp), cfg)
        if "optimizer.warmup_fraction" in values:
            cfg.optimizer.warmup_steps = int(round(values["optimizer.warmup_fraction"]
                                                   * cfg.trainer.train_steps))
        if model_dir is not None:
            cfg.model_dir = model_dir
        try:
            config_lib.validate(cfg)
            if cfg.model.preset != "standin_gpt2":
                models.validate_config(models.resolve_config(cfg.model.preset, **overrides))
        except ValueError as e:
            raise ValueError(f"search space point {values}: {e}") from None
        return cfg

    def _derived_widths(self, cfg, values, overrides):
        """key_value_dim = hidden_dim // num_heads and intermediate_dim = 4 x hidden_dim (or
        ffn_multiplier x hidden_dim) when the widths they follow are tuned and they are not."""
        from massivetext_tf import models

        if cfg.model.preset == "standin_gpt2":
            return overrides
        base = self.base_config.model.overrides or {}
        resolved = models.resolve_config(cfg.model.preset, **overrides)
        tuned = {n.split(".", 1)[1] for n in values if n.startswith("model.")}
        hidden, heads = resolved["hidden_dim"], resolved["num_heads"]
        if ("hidden_dim" in tuned or "num_heads" in tuned) and "key_value_dim" not in tuned \
                and "key_value_dim" not in base:
            kv = max(1, hidden // heads)
            if resolved.get("position_encoding") == "rotary" and kv % 2:
                kv = max(2, kv - 1)
            overrides["key_value_dim"] = kv
        if "model.ffn_multiplier" in values:
            overrides["intermediate_dim"] = max(1, int(round(values["model.ffn_multiplier"] * hidden)))
        elif "hidden_dim" in tuned and "intermediate_dim" not in tuned \
                and "intermediate_dim" not in base:
            overrides["intermediate_dim"] = 4 * hidden  # Gopher: feed-forward 4 x d_model
        return overrides
