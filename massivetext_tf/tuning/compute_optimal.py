"""Compute-optimal model size and token count, after Chinchilla (Hoffmann et al. 2022).

Training compute is C ~= 6 N D FLOPs (N parameters, D training tokens: 2 N for the forward
pass and 4 N for the backward pass per token). Approach 1 of the paper (fixing model sizes and
varying the number of training tokens) fits N_opt ~ C^0.50 and D_opt ~ C^0.50, which at the
paper's scale works out to about 20 tokens per parameter (Chinchilla: 70B parameters, 1.4T
tokens, C = 5.76e23). With D = 20 N:

    C = 6 N (20 N) = 120 N^2   =>   N = sqrt(C / 120),   D = 20 N.

    suggest(5.76e23)["params"]   -> 6.93e10   (69.3B; Chinchilla is 70B)
    suggest(5.76e23)["tokens"]   -> 1.39e12   (1.4T)

The suggestion names the nearest Gopher-family preset (by `count_params`) and a shape
(layers, d_model, heads) of about N parameters for the base config's vocabulary, which is what
small budgets (a tiny model on a laptop) need. `bound_space` restricts a search space's
architecture choices to models within a factor of N.
"""
from __future__ import annotations

import copy
import functools
import itertools
import math

FLOPS_PER_PARAM_TOKEN = 6.0
TOKENS_PER_PARAM = 20.0  # Chinchilla approach 1 (Hoffmann et al. 2022)
REFERENCE = "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models"


def optimal_params_tokens(flops: float, tokens_per_param: float = TOKENS_PER_PARAM):
    """(N, D) with 6 N D = flops and D = tokens_per_param x N."""
    if not isinstance(flops, (int, float)) or not math.isfinite(flops) or flops <= 0:
        raise ValueError(f"--flop-budget: must be a positive number of FLOPs, got {flops!r}")
    if tokens_per_param <= 0:
        raise ValueError(f"--tokens-per-param: must be > 0, got {tokens_per_param!r}")
    n = math.sqrt(flops / (FLOPS_PER_PARAM_TOKEN * tokens_per_param))
    return n, tokens_per_param * n


def training_flops(params: float, tokens: float) -> float:
    return FLOPS_PER_PARAM_TOKEN * params * tokens


@functools.lru_cache(maxsize=None)
def zoo_family() -> tuple:
    """((preset, params), ...) of the decoder-only zoo presets, smallest first."""
    from massivetext_tf import models

    out = []
    for name in models.list_presets():
        cfg = models.preset_config(name)
        if cfg.get("model_type", "decoder_only") == "decoder_only":
            out.append((name, int(models.count_params(name))))
    return tuple(sorted(out, key=lambda x: x[1]))


def nearest_preset(params: float) -> dict:
    name, count = min(zoo_family(), key=lambda x: abs(math.log(x[1] / params)))
    return {"preset": name, "params": count, "ratio": count / params}


def _kv_for(d: int) -> int:
    """Per-head width by model width, as in the Gopher table (16 tiny ... 128 large)."""
    if d < 256:
        return 16
    if d < 512:
        return 32
    if d < 1536:
        return 64
    return 128


@functools.lru_cache(maxsize=1)
def _width_grid() -> tuple:
    grid = list(range(16, 256, 16)) + list(range(256, 1536, 64)) + list(range(1536, 65537, 128))
    return tuple(d for d in grid if d % _kv_for(d) == 0)


def _count(base: dict, layers: int, d: int) -> int:
    from massivetext_tf import models

    kv = _kv_for(d)
    return int(models.count_params(dict(base, num_layers=layers, hidden_dim=d, num_heads=d // kv,
                                        key_value_dim=kv, intermediate_dim=4 * d)))


def shape_for_params(params: float, *, base: dict | None = None, aspect: float | None = None,
                     max_layers: int = 128) -> dict:
    """A Gopher-style shape (layers, d_model, heads, kv, 4 d feed-forward) of about `params`.

    `base` is the zoo config the shape overrides (its vocabulary, context and position scheme
    count). For each depth the width is the grid value whose count is nearest; among depths the
    one that is nearest in log-parameters with a width/depth ratio near `aspect` (Gopher's
    d_model / layers is 64 to 205; default 64, 32 below 10M parameters) wins.
    """
    from massivetext_tf import models

    base = dict(base or models.preset_config("gopher_tiny"))
    if aspect is None:
        aspect = 64.0 if params >= 1e7 else 32.0
    grid = _width_grid()
    best = None
    for layers in range(1, max_layers + 1):
        lo, hi = 0, len(grid) - 1
        while lo < hi:  # first width whose count reaches params
            mid = (lo + hi) // 2
            if _count(base, layers, grid[mid]) < params:
                lo = mid + 1
            else:
                hi = mid
        for i in {max(lo - 1, 0), lo}:
            d = grid[i]
            n = _count(base, layers, d)
            score = abs(math.log(n / params)) + 0.25 * abs(math.log((d / layers) / aspect))
            if best is None or score < best[0]:
                best = (score, layers, d, n)
        if _count(base, layers, grid[0]) > 4 * params:
            break
    _, layers, d, n = best
    kv = _kv_for(d)
    return {"num_layers": layers, "hidden_dim": d, "num_heads": d // kv, "key_value_dim": kv,
            "intermediate_dim": 4 * d, "params": n}


def suggest(flops: float, *, base_cfg=None, tokens_per_param: float = TOKENS_PER_PARAM) -> dict:
    """Compute-optimal N and D for `flops`, the nearest zoo preset and a shape of ~N params.

    With `base_cfg` (an ExperimentConfig) the shape uses its model preset and data vocabulary,
    and the result carries the number of training steps at its batch shape.
    """
    from massivetext_tf.tuning import hypermodel as hm_lib

    n, d = optimal_params_tokens(flops, tokens_per_param)
    base = hm_lib.model_config(base_cfg) if base_cfg is not None else None
    out = {
        "flops": float(flops), "params": n, "tokens": d, "tokens_per_param": tokens_per_param,
        "formula": "N = sqrt(C / (6 * tokens_per_param)), D = tokens_per_param * N",
        "reference": REFERENCE,
        "nearest_preset": nearest_preset(n),
        "shape": shape_for_params(n, base=base),
    }
    if base_cfg is not None:
        out["train_steps"] = hm_lib.steps_for_tokens(d, base_cfg)
        out["tokens_per_step"] = hm_lib.tokens_per_step(base_cfg)
    return out


def suggest_config(flops: float, base_cfg, *, tokens_per_param: float = TOKENS_PER_PARAM):
    """`base_cfg` with the suggested shape as model overrides and D tokens of training."""
    from massivetext_tf.training import config as config_lib

    s = suggest(flops, base_cfg=base_cfg, tokens_per_param=tokens_per_param)
    cfg = copy.deepcopy(base_cfg)
    shape = {k: v for k, v in s["shape"].items() if k != "params"}
    cfg.model.overrides = {**dict(cfg.model.overrides or {}), **shape}
    cfg.trainer.train_steps = s["train_steps"]
    if cfg.optimizer.warmup_steps >= cfg.trainer.train_steps:
        cfg.optimizer.warmup_steps = max(cfg.trainer.train_steps // 10, 0)
    config_lib.validate(cfg)
    return cfg, s


def bound_space(space: dict, flops: float, base_cfg, *, factor: float = 4.0,
                tokens_per_param: float = TOKENS_PER_PARAM, max_points: int = 20000):
    """Restricts the architecture dimensions of `space` to models within `factor` of N_opt.

    Every combination of the discrete architecture choices (layers, d_model, heads, kv size,
    feed-forward; continuous ones at their midpoint) is counted with `count_params`; each
    dimension keeps the values that occur in at least one combination with
    N_opt / factor <= params <= factor x N_opt. Returns (new space, info).
    """
    import keras_tuner

    from massivetext_tf.tuning import hypermodel as hm_lib
    from massivetext_tf.tuning import space as space_lib

    if factor <= 1:
        raise ValueError(f"--flop-factor: must be > 1, got {factor}")
    n_opt, d_opt = optimal_params_tokens(flops, tokens_per_param)
    arch = [name for name in space if name in space_lib.ARCHITECTURE]
    info = {"params": n_opt, "tokens": d_opt, "factor": factor, "dimensions": {}}
    if not arch:
        return dict(space), info
    discrete = {name: space[name].candidates() for name in arch
                if space[name].candidates() is not None}
    points = math.prod(len(v) for v in discrete.values()) if discrete else 1
    if points > max_points:
        raise ValueError(f"--flop-budget: {points} architecture combinations to count; narrow "
                         f"the search space (at most {max_points})")
    hm = hm_lib.ZooHyperModel(base_cfg, space)
    names = list(discrete)
    keep = {name: set() for name in names}
    nearest = None
    for combo in itertools.product(*(discrete[n] for n in names)):
        hp = keras_tuner.HyperParameters()
        hm.declare_hyperparameters(hp)
        for name, value in zip(names, combo):
            hp.values[name] = value
        for name in arch:
            if name not in discrete:
                hp.values[name] = space_lib.log_midpoint(space[name])
        try:
            count = hm_lib.analytic_params(hm.config_for(hp))
        except ValueError:
            continue
        gap = abs(math.log(count / n_opt))
        if nearest is None or gap < nearest[0]:
            nearest = (gap, count, dict(zip(names, combo)))
        if n_opt / factor <= count <= n_opt * factor:
            for name, value in zip(names, combo):
                keep[name].add(value)
    if not any(keep.values()):
        near = f"; nearest: {nearest[1]:,} params at {nearest[2]}" if nearest else ""
        raise ValueError(
            f"--flop-budget {flops:g}: no architecture in the search space is within a factor "
            f"{factor:g} of the compute-optimal N = {n_opt:,.0f} parameters{near}")
    out = dict(space)
    for name in names:
        allowed = [v for v in discrete[name] if v in keep[name]]
        out[name] = space_lib.narrow(space[name], allowed)
        info["dimensions"][name] = {"before": discrete[name], "after": allowed}
    return out, info
