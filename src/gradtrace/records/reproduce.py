"""What `gradtrace reproduce` found: one row per published claim, measured here.

Reproduction.claims   the table: claim, paper, what was measured, the pass criterion,
                      whether it passed, and the runs (config keys in the store) behind it
Reproduction.store    the sweep store that holds every run's `TrainRun`
"""

from __future__ import annotations

from dataclasses import dataclass

from gradtrace.records.base import Record


@dataclass(frozen=True, eq=False, repr=False)
class ClaimResult(Record):
    """One claim checked against runs made here.

    Attributes:
        name: A short name ("lstm-adding-100").
        claim: The claim in words.
        paper: Where it was published (authors, year).
        criterion: The pass criterion, in words, with its threshold.
        measured: What the runs gave, in words and numbers.
        passed: Whether the criterion holds.
        runs: The store keys of the runs it rests on.
    """

    name: str
    claim: str
    paper: str
    criterion: str
    measured: str
    passed: bool
    runs: tuple[str, ...]


@dataclass(frozen=True, eq=False, repr=False)
class Reproduction(Record):
    """The reproduction's table and where its runs and figures are.

    Attributes:
        protocol: "quick" (the subset `make test` runs), "cpu" (`make reproduce`) or "full".
        claims: One row per claim, in the protocol's order.
        seconds: Wall-clock time of this call (runs already in the store are not redone).
        run_seconds: The runs' own times added up, however many calls made them.
        store: The SQLite store of the runs.
        figures: The files written (figures, table.md).
    """

    KIND = "reproduction"

    protocol: str
    claims: tuple[ClaimResult, ...]
    seconds: float
    run_seconds: float
    store: str
    figures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether every claim passed."""
        return all(c.passed for c in self.claims)

    def table(self) -> str:
        """The table as Markdown: claim, paper, measured, pass."""
        rows = ["| claim | paper | measured | pass |", "| --- | --- | --- | --- |"]
        for c in self.claims:
            mark = "yes" if c.passed else "NO"
            rows.append(f"| {c.claim} ({c.criterion}) | {c.paper} | {c.measured} | {mark} |")
        return "\n".join(rows)

    def __repr__(self) -> str:
        done = sum(c.passed for c in self.claims)
        return f"Reproduction({self.protocol}: {done} of {len(self.claims)} claims pass)"
