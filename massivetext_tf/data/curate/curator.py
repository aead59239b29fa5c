"""The curation driver: documents in, kept documents out, every removal counted.

Stages, in order (each can be skipped through `CurationConfig.skip`):

0. langid       sources with language "auto": identify each document's language
                (`langid.py`), whose rules the next stages apply
1. quality      `quality_filter_reason` (per-source language)
2. repetition   `repetition_filter_reason`
3. contamination  against `ContaminationConfig.eval_files` (or `eval_documents=`)
4. dedup        exact, then MinHash near duplicates, against everything kept so far

Cheap per-document filters run first so that the stateful stages only see (and only
remember) documents that survive them; contamination runs before dedup so that a
contaminated document never enters the dedup index.

`run` takes its input in chunks and computes the stateless work (quality, repetition, dedup
sketches) for a whole chunk at once; the decisions, the report and the callbacks are the
same as `process` gives one document at a time.

Example:

```python
from massivetext_tf.data.curate import Curator, CurationConfig, SourceSpec, read_documents

curator = Curator(CurationConfig(), on_reject=lambda doc, stage, rule: ...)
docs = read_documents(SourceSpec("web", ["data/web/*.jsonl.zst"]), stats=curator.report)
for doc in curator.run(docs):
    ...
print(curator.report.format_table())
```
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from massivetext_tf.data.curate.config import CurationConfig
from massivetext_tf.data.curate.dedup import (ContaminationFilter, Deduplicator, Sketch,
                                              sketch_batch)
from massivetext_tf.data.curate.document import Document, SourceSpec
from massivetext_tf.data.curate.langid import identify_document
from massivetext_tf.data.curate.quality import quality_checks
from massivetext_tf.data.curate.readers import read_documents
from massivetext_tf.data.curate.repetition import repetition_checks, repetition_failures
from massivetext_tf.data.curate.report import CurationReport
from massivetext_tf.data.curate.text import TextView, is_unspaced

RejectCallback = Callable[[Document, str, str], None]


def _first_failure(checks) -> str | None:
    for rule, _, passed in checks:
        if not passed:
            return rule
    return None


class Curator:
    """Runs the curation stages over a stream of documents.

    Args:
        config: a `CurationConfig` (the paper's defaults when None).
        on_reject: called as `on_reject(doc, stage, rule)` for every removed document
            (stage is "quality", "repetition", "contamination" or "dedup"; the report key is
            f"{stage}:{rule}").
        eval_documents: evaluation texts for the contamination filter, in addition to
            `config.contamination.eval_files`: an iterable of `Document` or of str.

    Attributes:
        report: the `CurationReport` that every call of `run` adds to. Pass it as
            `read_documents(..., stats=curator.report)` to count read errors in it too.
    """

    def __init__(self, config: CurationConfig | None = None, *,
                 on_reject: RejectCallback | None = None,
                 eval_documents: Iterable[Document | str] | None = None):
        self.config = config if config is not None else CurationConfig()
        self.on_reject = on_reject
        self.report = CurationReport()
        skip = self.config.skip
        dedup = self.config.dedup
        self._dedup = (Deduplicator(dedup)
                       if "dedup" not in skip and (dedup.exact or dedup.minhash) else None)
        self._eval_documents = list(eval_documents) if eval_documents is not None else []
        self._contamination: ContaminationFilter | None = None
        self._contamination_ready = "contamination" in skip

    # -- contamination index -------------------------------------------------------------

    def _eval_texts(self):
        c = self.config.contamination
        for i, d in enumerate(self._eval_documents):
            yield (d.id or f"eval:{i}", d.text) if isinstance(d, Document) else (f"eval:{i}", d)
        if c.eval_files:
            spec = SourceSpec(name="eval", patterns=list(c.eval_files), format=c.eval_format,
                              text_field=c.eval_text_field, language=c.eval_language)
            for d in read_documents(spec, on_error="raise"):
                yield d.id, d.text

    @property
    def contamination_filter(self) -> ContaminationFilter | None:
        """The eval-set index, built on first use (None when there is no eval set)."""
        if not self._contamination_ready:
            c = self.config.contamination
            unspaced = is_unspaced(c.eval_language, self.config.quality.unspaced_languages)
            index = ContaminationFilter(c, self._eval_texts(), unspaced=unspaced)
            self._contamination = index if len(index) else None
            self._contamination_ready = True
        return self._contamination

    # -- curation ------------------------------------------------------------------------

    def _stateless_verdict(self, doc: Document, language: str,
                           view: TextView) -> tuple[str, str] | None:
        config = self.config
        if "quality" not in config.skip:
            rule = _first_failure(quality_checks(view, config.quality, language))
            if rule:
                return "quality", rule
        if "repetition" not in config.skip:
            rule = _first_failure(repetition_checks(view, config.repetition, language))
            if rule:
                return "repetition", rule
        return None

    def _stateful_verdict(self, doc: Document, language: str,
                          sketch: Sketch | None) -> tuple[str, str] | None:
        """Contamination and dedup (the dedup index remembers a kept document)."""
        if self.contamination_filter is None and self._dedup is None:
            return None
        if sketch is None:
            sketch = Sketch(doc.text, is_unspaced(language,
                                                  self.config.quality.unspaced_languages))
        if self.contamination_filter is not None:
            rule = self._contamination.check(sketch)
            if rule:
                return "contamination", rule
        if self._dedup is not None:
            rule = self._dedup.check(sketch)
            if rule:
                return "dedup", rule
        return None

    def check(self, doc: Document) -> tuple[str, str] | None:
        """(stage, rule) that removes `doc`, or None when it is kept.

        Stateful: a kept document is remembered by the dedup stage. Does not touch the
        report; `process` and `run` do. A document of an "auto" source gets its language
        identified (in place) first."""
        verdict = identify_document(doc, self.config)
        if verdict is not None:
            return verdict
        language = self.config.language_for(doc.source, doc.language)
        verdict = self._stateless_verdict(doc, language, TextView(doc.text))
        if verdict is not None:
            return verdict
        return self._stateful_verdict(doc, language, None)

    def _account(self, doc: Document, verdict: tuple[str, str] | None, num_bytes: int) -> bool:
        language = doc.language if doc.language_score is not None else None
        if verdict is None:
            self.report.count_kept(doc.source, num_bytes, language)
            return True
        stage, rule = verdict
        self.report.count_removed(doc.source, f"{stage}:{rule}", num_bytes, language)
        if self.on_reject is not None:
            self.on_reject(doc, stage, rule)
        return False

    def process(self, doc: Document) -> bool:
        """Curate one document: count it, call `on_reject` if removed; True if kept."""
        num_bytes = doc.num_bytes
        verdict = self.check(doc)
        self.report.count_in(doc.source, num_bytes,
                             doc.language if doc.language_score is not None else None)
        return self._account(doc, verdict, num_bytes)

    def run(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Yield the kept documents, in input order, streaming.

        The documents are taken in chunks (`BATCH_DOCUMENTS` documents or `BATCH_CHARS`
        characters, whichever comes first): quality, repetition and the dedup sketches need
        no state, so they are computed for a whole chunk at once, several times cheaper than
        one document at a time (`repetition_failures`, `sketch_batch`). The report,
        `on_reject`, contamination and the dedup index then see the documents one by one as
        they are yielded, in order, exactly as `process` would: the results are the same,
        and a caller that stops early leaves the same state. Only the input is read up to
        one chunk ahead (an error raised by it comes after the documents read before it).
        """
        it = iter(docs)
        while True:
            chunk, chars, more, error = [], 0, False, None
            try:
                for doc in it:
                    chunk.append(doc)
                    chars += len(doc.text)
                    if len(chunk) >= self.BATCH_DOCUMENTS or chars >= self.BATCH_CHARS:
                        more = True
                        break
            except Exception as e:  # noqa: BLE001 -- re-raised once the chunk is out
                error = e
            if chunk:
                yield from self._run_chunk(chunk)
            if error is not None:
                raise error
            if not more:
                return

    BATCH_DOCUMENTS = 256
    BATCH_CHARS = 1 << 22
    # Longer texts get their dedup sketch one at a time (bounded memory per array).
    BATCH_SKETCH_CHARS = 1 << 20

    def _run_chunk(self, chunk: list[Document]) -> Iterator[Document]:
        config = self.config
        verdicts: list[tuple[str, str] | None] = [identify_document(d, config) for d in chunk]
        languages = [config.language_for(d.source, d.language) for d in chunk]
        views = [TextView(d.text) for d in chunk]
        if "quality" not in config.skip:
            for i, view in enumerate(views):
                if verdicts[i] is not None:
                    continue
                rule = _first_failure(quality_checks(view, config.quality, languages[i]))
                if rule:
                    verdicts[i] = ("quality", rule)
        if "repetition" not in config.skip:
            todo = [i for i, v in enumerate(verdicts) if v is None]
            rules = repetition_failures([views[i] for i in todo], config.repetition,
                                        [languages[i] for i in todo])
            for i, rule in zip(todo, rules):
                if rule:
                    verdicts[i] = ("repetition", rule)
        del views
        sketches: list[Sketch | None] = [None] * len(chunk)
        if self._dedup is not None:
            dedup, unspaced = config.dedup, config.quality.unspaced_languages
            todo = [i for i, v in enumerate(verdicts)
                    if v is None and len(chunk[i].text) <= self.BATCH_SKETCH_CHARS
                    and not is_unspaced(languages[i], unspaced)]
            batch = sketch_batch([chunk[i].text for i in todo], dedup.ngram,
                                 self._dedup.hasher if dedup.minhash else None, dedup.exact)
            for i, sketch in zip(todo, batch):
                sketches[i] = sketch
        for doc, language, verdict, sketch in zip(chunk, languages, verdicts, sketches):
            num_bytes = doc.num_bytes
            self.report.count_in(doc.source, num_bytes,
                                 doc.language if doc.language_score is not None else None)
            if verdict is None:
                verdict = self._stateful_verdict(doc, language, sketch)
            if self._account(doc, verdict, num_bytes):
                yield doc
