"""Per-source, per-rule accounting of what curation read, kept and removed.

Invariant (tested): for every source,
`documents_in == documents_kept + sum(removed.values())`, and the same for bytes with
`removed_bytes`. Rule names are `stage:rule`, e.g. `quality:min_words`, `read:bad_json`,
`dedup:minhash`.

Sources whose documents' language is identified (`lang=auto`) also count each document under
its language: `languages` maps an ISO 639-1 code (`und` below the confidence threshold) to
the same counts. Units that could not be read have no language and are counted under the
source only, so the languages add up to the source minus its `read:*` removals.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SourceStats:
    documents_in: int = 0
    documents_kept: int = 0
    bytes_in: int = 0
    bytes_kept: int = 0
    removed: dict = field(default_factory=dict)
    removed_bytes: dict = field(default_factory=dict)
    languages: dict = field(default_factory=dict)   # code -> SourceStats (no nesting)

    def language(self, code: str) -> "SourceStats":
        stats = self.languages.get(code)
        if stats is None:
            stats = self.languages[code] = SourceStats()
        return stats

    def to_dict(self) -> dict:
        out = self._counts()
        if self.languages:
            out["languages"] = {k: v._counts() for k, v in sorted(self.languages.items())}
        return out

    def _counts(self) -> dict:
        return {
            "documents_in": self.documents_in,
            "documents_kept": self.documents_kept,
            "bytes_in": self.bytes_in,
            "bytes_kept": self.bytes_kept,
            "removed": dict(sorted(self.removed.items())),
            "removed_bytes": dict(sorted(self.removed_bytes.items())),
        }

    def merge(self, other: "SourceStats") -> None:
        self.documents_in += other.documents_in
        self.documents_kept += other.documents_kept
        self.bytes_in += other.bytes_in
        self.bytes_kept += other.bytes_kept
        for rule, n in other.removed.items():
            self.removed[rule] = self.removed.get(rule, 0) + n
        for rule, n in other.removed_bytes.items():
            self.removed_bytes[rule] = self.removed_bytes.get(rule, 0) + n
        for code, stats in other.languages.items():
            self.language(code).merge(stats)


class CurationReport:
    """Counts per source. `to_dict()` is plain JSON; `merge()` adds another report in place
    (and returns self), so reports of shards or workers can be combined."""

    def __init__(self):
        self.sources: dict[str, SourceStats] = {}

    def _stats(self, source: str) -> SourceStats:
        stats = self.sources.get(source)
        if stats is None:
            stats = self.sources[source] = SourceStats()
        return stats

    # -- recording ---------------------------------------------------------------------

    def _targets(self, source: str, language: str | None):
        stats = self._stats(source)
        return (stats,) if language is None else (stats, stats.language(language))

    def count_in(self, source: str, num_bytes: int, language: str | None = None) -> None:
        """`language`: also count under that language (identified documents only)."""
        for stats in self._targets(source, language):
            stats.documents_in += 1
            stats.bytes_in += num_bytes

    def count_kept(self, source: str, num_bytes: int, language: str | None = None) -> None:
        for stats in self._targets(source, language):
            stats.documents_kept += 1
            stats.bytes_kept += num_bytes

    def count_removed(self, source: str, rule: str, num_bytes: int,
                      language: str | None = None) -> None:
        for stats in self._targets(source, language):
            stats.removed[rule] = stats.removed.get(rule, 0) + 1
            stats.removed_bytes[rule] = stats.removed_bytes.get(rule, 0) + num_bytes

    def count_read_error(self, source: str, rule: str, num_bytes: int = 0) -> None:
        """An unreadable unit counts as a document in that was removed by `rule`."""
        self.count_in(source, num_bytes)
        self.count_removed(source, rule, num_bytes)

    # -- reading -------------------------------------------------------------------------

    def total(self) -> SourceStats:
        out = SourceStats()
        for stats in self.sources.values():
            out.merge(stats)
        return out

    def removed_by_rule(self) -> dict[str, int]:
        return dict(sorted(self.total().removed.items()))

    def to_dict(self) -> dict:
        return {
            "sources": {name: s.to_dict() for name, s in sorted(self.sources.items())},
            "total": self.total().to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CurationReport":
        report = cls()
        def stats(s):
            return SourceStats(
                documents_in=int(s.get("documents_in", 0)),
                documents_kept=int(s.get("documents_kept", 0)),
                bytes_in=int(s.get("bytes_in", 0)),
                bytes_kept=int(s.get("bytes_kept", 0)),
                removed={k: int(v) for k, v in s.get("removed", {}).items()},
                removed_bytes={k: int(v) for k, v in s.get("removed_bytes", {}).items()})

        for name, s in data.get("sources", {}).items():
            report.sources[name] = stats(s)
            report.sources[name].languages = {
                code: stats(v) for code, v in s.get("languages", {}).items()}
        return report

    def merge(self, other: "CurationReport") -> "CurationReport":
        for name, stats in other.sources.items():
            self._stats(name).merge(stats)
        return self

    def format_table(self) -> str:
        """A fixed-width table: one row per count and rule, one column per source + total;
        then, when languages were identified, the same table with one column per
        source/language."""
        names = sorted(self.sources)
        table = self._table(["rule"] + names + ["total"],
                            [self.sources[n] for n in names] + [self.total()])
        by_language = [(f"{n}/{code}", self.sources[n].languages[code]) for n in names
                       for code in sorted(self.sources[n].languages)]
        if by_language:
            table += "\n\nby language\n" + self._table(
                ["rule"] + [h for h, _ in by_language], [s for _, s in by_language])
        return table

    @staticmethod
    def _table(headers, columns) -> str:
        rules = sorted({r for s in columns for r in s.removed})
        rows = [
            ["documents in"] + [f"{s.documents_in:,}" for s in columns],
            ["documents kept"] + [f"{s.documents_kept:,}" for s in columns],
            ["kept %"] + [f"{100.0 * s.documents_kept / s.documents_in:.1f}"
                          if s.documents_in else "-" for s in columns],
            ["bytes in"] + [f"{s.bytes_in:,}" for s in columns],
            ["bytes kept"] + [f"{s.bytes_kept:,}" for s in columns],
        ]
        rule_rows = [[f"removed {r}"] + [f"{s.removed.get(r, 0):,}" for s in columns]
                     for r in rules]
        widths = [max(len(row[i]) for row in [headers] + rows + rule_rows)
                  for i in range(len(headers))]

        def fmt(row):
            return "  ".join([row[0].ljust(widths[0])] +
                             [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])])

        rule_line = "-" * (sum(widths) + 2 * (len(widths) - 1))
        lines = [fmt(headers), rule_line] + [fmt(r) for r in rows]
        if rule_rows:
            lines += [rule_line] + [fmt(r) for r in rule_rows]
        return "\n".join(lines)

    def __repr__(self):
        t = self.total()
        return (f"CurationReport(sources={len(self.sources)}, documents_in={t.documents_in}, "
                f"documents_kept={t.documents_kept})")
