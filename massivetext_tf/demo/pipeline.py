"""The demo's stages in order, each reused when its fingerprint and outputs match."""
from __future__ import annotations

import os
import time
from typing import Callable

from massivetext_tf.demo import report, stages
from massivetext_tf.demo.options import STAGES, DemoError, Options
from massivetext_tf.demo.run import Run, gfile, sha
from massivetext_tf.demo.train import train_stage

STAGE_FUNCTIONS = {
    "corpus": stages.corpus_stage, "curate": stages.curate_stage,
    "tokenizer": stages.tokenizer_stage, "shards": stages.shards_stage,
    "train": train_stage, "evaluate": stages.evaluate_stage,
    "generate": stages.generate_stage, "export": stages.export_stage,
}


def fingerprints(run: Run) -> dict:
    """`{stage: fingerprint}`: each stage's settings chained with the stages before it, so a
    change redoes that stage and every stage after it."""
    d, opts = run.demo, run.opts
    fp = {}
    fp["corpus"] = sha({"v": 1, "plays": d["plays"], "held_out": d["held_out"]})
    fp["curate"] = sha({"up": fp["corpus"], "v": 1})
    fp["tokenizer"] = sha({"up": fp["curate"], "vocab": d["vocab_size"]})
    fp["shards"] = sha({"up": fp["tokenizer"], "v": 1})
    fp["train"] = sha({"up": fp["shards"], "config": run.trainer_config,
                       "steps": opts.train_steps, "set": list(opts.overrides)})
    fp["evaluate"] = sha({"up": fp["train"], "stride": d["eval_stride"], "v": 2,
                          "task_items": d["eval_task_items"]})
    fp["generate"] = sha({"up": fp["train"], "prompts": d["prompts"],
                          "n": d["sample_tokens"], "k": d["sample_top_k"],
                          "t": d["sample_temperature"]})
    fp["export"] = sha({"up": fp["train"], "dir": os.path.abspath(run.export_dir)
                        if "://" not in run.export_dir else run.export_dir,
                        "n": d["export_max_new_tokens"]})
    return fp


class Demo:
    """Runs the stages in order; `run()` writes `summary.json` and returns the summary."""

    def __init__(self, opts: Options, *, out: Callable[[str], None] | None = None):
        self.opts = opts
        self.ctx = Run(opts, out=out)
        self.timings: dict = {}

    def run(self) -> dict:
        ctx = self.ctx
        t_start = time.perf_counter()
        if self.opts.fresh and gfile().exists(ctx.run_dir):
            if (not gfile().exists(f"{ctx.run_dir}/.stages")
                    and gfile().listdir(ctx.run_dir)):
                raise DemoError(f"--fresh: {ctx.run_dir} exists but is not a demo run "
                                "directory (no .stages/); not deleting it")
            ctx.say(f"fresh run: removing {ctx.run_dir}")
            ctx.remove(ctx.run_dir)
        gfile().makedirs(ctx.run_dir)
        fps = fingerprints(ctx)
        results = {}
        for i, name in enumerate(STAGES, 1):
            t0 = time.perf_counter()
            results[name] = STAGE_FUNCTIONS[name](ctx, i, fps[name])
            self.timings[name] = round(time.perf_counter() - t0, 2)
            if self.opts.stop_after == name:
                break
        summary = report.summarize(
            results, run_dir=ctx.run_dir, config=self.opts.config, paths=ctx.paths,
            trainer_config=ctx.trainer_config, stage_seconds=self.timings,
            reused=ctx.reused, total_s=time.perf_counter() - t_start)
        report.write_summary(ctx.paths["summary"], summary)
        for line in report.done_lines(summary, ctx.paths):
            ctx.say(line)
        return summary
