"""The reproduction's quick subset (what `make test` runs): every claim in it passes here.

Reference: each claim's published finding, with the pass criterion stated in the claim
(`gradtrace.reproduce.claims`); the record's round trip through the codec.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gradtrace.budgets import DEFAULT_SECONDS
from gradtrace.errors import GradtraceError
from gradtrace.records import Reproduction, load
from gradtrace.reproduce import claims_of, reproduce
from gradtrace.tasks import make_task
from gradtrace.training import TrainConfig
from gradtrace.training.train import run_work


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


def test_bad_workers_are_refused_before_the_report_folder_is_made(tmp_path: Path) -> None:
    out = tmp_path / "out" / "reproduce"
    with pytest.raises(GradtraceError, match="`workers` must be a whole number >= 1"):
        reproduce(out, protocol="quick", workers=0, show_progress=False)
    assert not (tmp_path / "out").exists()  # a refused run created out/reproduce before


def test_every_cpu_run_fits_the_default_work_budget() -> None:
    # `gradtrace train` prices a run before it starts; the CPU protocol's runs must pass
    for claim in claims_of("cpu"):
        for run in claim.runs:
            config = TrainConfig.from_dict(run)
            task = make_task(config.task, config.length, reverse=config.reverse)
            assert run_work(config, task).seconds < DEFAULT_SECONDS, config.label()
