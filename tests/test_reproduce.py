"""The reproduction's quick subset (what `make test` runs): every claim in it passes here.

Reference: each claim's published finding, with the pass criterion stated in the claim
(`gradtrace.reproduce.claims`); the record's round trip through the codec.
"""

from __future__ import annotations

from pathlib import Path

from gradtrace.records import Reproduction, load
from gradtrace.reproduce import claims_of, reproduce


def test_quick_protocol_passes_and_writes_its_report(tmp_path: Path) -> None:
    report = reproduce(tmp_path, protocol="quick", show_progress=False)
    assert [c.name for c in report.claims] == [c.name for c in claims_of("quick")]
    for claim in report.claims:
        assert claim.passed, f"{claim.name}: {claim.measured}"
    assert (tmp_path / "table.md").read_text().count("| yes |") == len(report.claims)
    for figure in report.figures:
        assert Path(figure).stat().st_size > 0
    assert load(tmp_path / "reproduction.json") == report
    again = reproduce(tmp_path, protocol="quick", show_progress=False)  # from the store
    assert [c.measured for c in again.claims] == [c.measured for c in report.claims]
    assert isinstance(again, Reproduction)


def test_cpu_protocol_has_about_ten_claims_and_quick_is_a_subset() -> None:
    cpu = {c.name for c in claims_of("cpu")}
    assert len(cpu) >= 9
    assert {c.name for c in claims_of("quick")} < cpu
