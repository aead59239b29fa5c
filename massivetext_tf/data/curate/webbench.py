"""The web pipeline against datatrove's on the same WARC files (`tools/benchmark_data.py --web`).

Ours: `read_documents` (FastWARC, Resiliparse, ftfy + NFKC) -> `Curator` (langid, quality,
repetition, exact + MinHash dedup), with datatrove's reading of the duplicate n-gram rule
(`duplicate_ngram_counting="repeats"`). Datatrove's: `WarcReader` -> `Trafilatura` (its HTML
extractor) -> `GopherRepetitionFilter` -> `GopherQualityFilter` (spaCy words), run in-process
step after step as its `LocalPipelineExecutor` runs one task. Left out of datatrove's run, so
its figure is an upper bound of its throughput: its language filter (its fastText model is
downloaded at run time, which this project does not do) and its exact / MinHash dedup
(multi-stage jobs through files on disk).

Throughput: MB of WARC file per CPU-second (`time.process_time`, plus the finished child
processes' CPU time for datatrove, whose Trafilatura step extracts in a worker process), best
of `repeats`. Ours runs in this process only. Agreement: both filter chains judge the same texts (our extracted pages) and the
fraction of equal keep/reject decisions is reported.
"""

from __future__ import annotations

import os
import resource
import time


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its finished child processes (Trafilatura runs
    its extraction in a worker process)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _warc_megabytes(paths) -> float:
    return sum(os.path.getsize(p) for p in paths) / 1e6


def _config(dedup: bool):
    from massivetext_tf.data.curate import CurationConfig

    return CurationConfig.from_dict({
        "repetition": {"duplicate_ngram_counting": "repeats"},
        "skip": [] if dedup else ["dedup"]})


def run_ours(paths, repeats: int = 1, dedup: bool = True) -> dict:
    from massivetext_tf.data.curate import Curator, SourceSpec, read_documents

    best = None
    for _ in range(repeats):
        curator = Curator(_config(dedup))
        c0 = time.process_time()
        spec = SourceSpec("web", list(paths), format="warc", language="auto")
        kept = sum(1 for _ in curator.run(read_documents(spec, stats=curator.report)))
        cpu = time.process_time() - c0
        if best is None or cpu < best[0]:
            best = (cpu, kept, curator.report.total().documents_in)
    cpu, kept, total = best
    return {"cpu_s": cpu, "documents": total, "kept": kept,
            "mb_per_cpu_second": _warc_megabytes(paths) / cpu}


def run_datatrove(paths, repeats: int = 1) -> dict:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import WarcReader

    folder = os.path.dirname(os.path.abspath(paths[0]))
    if any(os.path.dirname(os.path.abspath(p)) != folder for p in paths):
        raise ValueError("datatrove's WarcReader reads one folder: put the WARC files together")
    names = sorted(os.path.basename(p) for p in paths)
    best = None
    for _ in range(repeats):
        reader = WarcReader(folder, glob_pattern="*.warc.gz")
        reader.data_folder.list_files = lambda *a, **k: names  # exactly these files
        steps = [reader, Trafilatura(favour_precision=True, timeout=60),
                 GopherRepetitionFilter(), GopherQualityFilter()]
        c0 = _cpu_with_children()
        data = None
        for step in steps:
            data = step(data, rank=0, world_size=1)
        kept = sum(1 for _ in data)
        del data, steps  # ends the extractor's worker process, so its CPU time is counted
        cpu = _cpu_with_children() - c0
        if best is None or cpu < best[0]:
            best = (cpu, kept)
    cpu, kept = best
    return {"cpu_s": cpu, "kept": kept, "mb_per_cpu_second": _warc_megabytes(paths) / cpu}


def agreement(paths) -> dict:
    """Keep/reject decisions of our quality + repetition stages (datatrove's reading of the
    duplicate n-gram rule, English rules) and of datatrove's Gopher filters, on the same texts."""
    from datatrove.data import Document as DTDocument
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

    from massivetext_tf.data.curate import Curator, SourceSpec, read_documents

    docs = list(read_documents(SourceSpec("web", list(paths), format="warc", language="en")))
    curator = Curator(_config(dedup=False))
    rep, qual = GopherRepetitionFilter(), GopherQualityFilter()
    equal = 0
    for i, doc in enumerate(docs):
        ours = curator.check(doc) is None
        dt = DTDocument(text=doc.text, id=str(i))
        theirs = rep.filter(dt) is True and qual.filter(dt) is True
        equal += ours == theirs
    return {"documents": len(docs), "equal": equal, "agreement": equal / max(len(docs), 1)}
