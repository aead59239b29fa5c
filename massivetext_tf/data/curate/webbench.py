"""The web pipeline against datatrove's on the same WARC files (`tools/benchmark_data.py --web`).

Ours: `read_documents` (FastWARC, Resiliparse, ftfy + NFKC) -> `Curator` (langid, quality,
repetition, exact + MinHash dedup) with the default `CurationConfig` (gopher reading).
Datatrove's: `WarcReader` -> `Trafilatura` (its HTML extractor) -> `GopherRepetitionFilter`
-> `GopherQualityFilter` (spaCy words), run in-process step after step as its
`LocalPipelineExecutor` runs one task. Left out of datatrove's run, so its figure is an upper
bound of its throughput: its language filter (its fastText model is downloaded at run time,
which this project does not do) and its exact / MinHash dedup (multi-stage jobs through
files on disk).

Throughput: MB of WARC file per CPU-second (`time.process_time`, plus the finished child
processes' CPU time for datatrove, whose Trafilatura step extracts in a worker process), best
of `repeats`, ours and datatrove's runs interleaved (a shared machine's load falls on both).
Ours runs in this process only. Ours is also run once configured to datatrove's reading
(`reading="datatrove_spacy"`, `duplicate_ngram_counting="repeats"`): spaCy's tokenizer makes
it several times slower; it is the configuration for agreement, not for throughput.

Agreement: both filter chains judge the same texts (our extracted pages, all read with the
English rules as datatrove's filters are by default), ours configured to datatrove's
reading; the fraction of equal keep/reject decisions is reported, with spaCy words
(`agreement`, datatrove's default) and with whitespace words (`agreement_whitespace`: ours
`datatrove_whitespace`, datatrove's filters given a `text.split()` tokenizer).
"""

from __future__ import annotations

import os
import resource
import sys
import time

DATATROVE_READING = "datatrove_spacy"


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its finished child processes (Trafilatura runs
    its extraction in a worker process)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _warc_megabytes(paths) -> float:
    return sum(os.path.getsize(p) for p in paths) / 1e6


def _config(dedup: bool = True, reading: str = "gopher"):
    from massivetext_tf.data.curate import CurationConfig

    data = {"skip": [] if dedup else ["dedup"]}
    if reading != "gopher":
        data["quality"] = {"reading": reading}
        data["repetition"] = {"reading": reading, "duplicate_ngram_counting": "repeats"}
    return CurationConfig.from_dict(data)


def _best(runs: list) -> dict:
    return min(runs, key=lambda r: r["cpu_s"])


def run_ours_once(paths, dedup: bool = True, reading: str = "gopher") -> dict:
    from massivetext_tf.data.curate import Curator, SourceSpec, read_documents
    from massivetext_tf.data.curate.segment import clear_cache

    curator = Curator(_config(dedup, reading))
    clear_cache()  # each run remembers only the jieba blocks it segmented itself
    c0 = time.process_time()
    spec = SourceSpec("web", list(paths), format="warc", language="auto")
    kept = sum(1 for _ in curator.run(read_documents(spec, stats=curator.report)))
    cpu = time.process_time() - c0
    return {"cpu_s": cpu, "documents": curator.report.total().documents_in, "kept": kept,
            "mb_per_cpu_second": _warc_megabytes(paths) / cpu}


def run_ours(paths, repeats: int = 1, dedup: bool = True, reading: str = "gopher") -> dict:
    return _best([run_ours_once(paths, dedup, reading) for _ in range(repeats)])


def run_datatrove_once(paths) -> dict:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import WarcReader

    folder = os.path.dirname(os.path.abspath(paths[0]))
    if any(os.path.dirname(os.path.abspath(p)) != folder for p in paths):
        raise ValueError("datatrove's WarcReader reads one folder: put the WARC files together")
    names = sorted(os.path.basename(p) for p in paths)
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
    return {"cpu_s": cpu, "kept": kept, "mb_per_cpu_second": _warc_megabytes(paths) / cpu}


def run_datatrove(paths, repeats: int = 1) -> dict:
    return _best([run_datatrove_once(paths) for _ in range(repeats)])


def _whitespace_tokenizer():
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text):
            return text.split()

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(0, len(text))]

    return Whitespace()


def agreement(paths, reading: str = DATATROVE_READING) -> dict:
    """Keep/reject decisions of our quality + repetition stages configured to datatrove's
    `reading` (English rules, "repeats" counting) and of datatrove's Gopher filters (spaCy
    words for "datatrove_spacy", `text.split()` for "datatrove_whitespace"), on the same
    texts. `disagreements` lists the first few that differ (index, ours, datatrove's)."""
    from datatrove.data import Document as DTDocument
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

    from massivetext_tf.data.curate import Curator, SourceSpec, read_documents

    docs = list(read_documents(SourceSpec("web", list(paths), format="warc", language="en")))
    curator = Curator(_config(dedup=False, reading=reading))
    language = "en" if reading == "datatrove_spacy" else _whitespace_tokenizer()
    rep = GopherRepetitionFilter(language=language)
    qual = GopherQualityFilter(language=language)
    equal, differ = 0, []
    for i, doc in enumerate(docs):
        verdict = curator.check(doc)
        dt = DTDocument(text=doc.text, id=str(i))
        theirs = [r for r in (rep.filter(dt), qual.filter(dt)) if r is not True]
        if (verdict is None) == (not theirs):
            equal += 1
        else:
            differ.append((i, verdict, theirs[0] if theirs else None))
    return {"reading": reading, "documents": len(docs), "equal": equal,
            "agreement": equal / max(len(docs), 1), "disagreements": differ[:20]}


def compare(paths, repeats: int = 2) -> dict:
    """The whole comparison; progress on stderr, the figures returned (the JSON line)."""
    from massivetext_tf.data.curate.segment import segment

    run_ours_once(paths[:1])  # load the models once (langid, extractor) outside timing
    segment("加载词典", "jieba")  # and jieba's dictionary
    ours, theirs = [], []
    for _ in range(repeats):  # interleaved: the machine's load falls on both alike
        ours.append(run_ours_once(paths))
        theirs.append(run_datatrove_once(paths))
    ours, theirs = _best(ours), _best(theirs)
    print(f"ours (FastWARC, Resiliparse, langid, quality, repetition, exact + MinHash dedup; "
          f"default config): {ours}", file=sys.stderr)
    print(f"datatrove (WarcReader, Trafilatura, Gopher repetition + quality; no langid, no "
          f"dedup): {theirs}", file=sys.stderr)
    ours_dt = run_ours_once(paths, reading=DATATROVE_READING)
    print(f"ours with reading={DATATROVE_READING} (spaCy words; not the throughput "
          f"configuration): {ours_dt}", file=sys.stderr)
    agree = agreement(paths, DATATROVE_READING)
    agree_ws = agreement(paths, "datatrove_whitespace")
    for a in (agree, agree_ws):
        print(f"agreement of keep/reject decisions on the same texts ({a['reading']}): "
              f"{a['equal']}/{a['documents']} = {a['agreement']:.2%}; differing: "
              f"{a['disagreements']}", file=sys.stderr)
    return {"warc_files": len(paths), "warc_megabytes": round(_warc_megabytes(paths), 3),
            "ours": ours, "datatrove": theirs, "ours_datatrove_reading": ours_dt,
            "agreement_detail": agree, "agreement_whitespace_detail": agree_ws,
            "mb_per_cpu_second": ours["mb_per_cpu_second"],
            "datatrove_mb_per_cpu_second": theirs["mb_per_cpu_second"],
            "ratio": ours["mb_per_cpu_second"] / theirs["mb_per_cpu_second"],
            "datatrove_reading_mb_per_cpu_second": ours_dt["mb_per_cpu_second"],
            "reading": DATATROVE_READING, "agreement": agree["agreement"],
            "disagreements": agree["documents"] - agree["equal"],
            "agreement_whitespace": agree_ws["agreement"]}
