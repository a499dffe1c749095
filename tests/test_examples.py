"""The examples run as a user runs them, at a tiny size, and write their reports; and
`gradtrace monitor` turns a run into figures, also while it is still being written.

References: the files exist and are PNGs; the report's verdicts are built from the records
(checked line by line against the records in `test_monitor_report_reads_a_run_being_written`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import gradtrace
from gradtrace.cli.main import run
from gradtrace.records import MonitorReport

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.txt"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("script", ["monitor_word_lm.py", "monitor_lightning.py"])
def test_the_monitor_examples_run_and_write_their_report(script: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [sys.executable, str(ROOT / "examples" / script), "--data", str(TINY)]
    argv += ["--steps", "24", "--every", "4", "--size", "16", "--out", str(out)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "recurrent share" in done.stdout
    report = out / "report"
    for name in ("profile.png", "norms.png", "shares.png"):
        assert (report / name).read_bytes().startswith(PNG)
    assert "# Monitored run of" in (report / "report.md").read_text()
    records = gradtrace.load(out / "monitor.jsonl")
    assert isinstance(records, list) and len(records) == 1 + 24 // 4  # header and 6 steps


def _small_run(folder: Path, steps: int) -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 4, dtype=torch.float64)
    opt = torch.optim.SGD(lstm.parameters(), 0.1)
    monitor = gradtrace.Monitor(lstm, opt, every=1, log=folder, chunk=5, lag_every=2, lags=(1, 3))
    for step in range(steps):
        x = torch.randn(
            12, 2, 2, generator=torch.Generator().manual_seed(step), dtype=torch.float64
        )
        with monitor.step(step) as s:
            s.loss(lstm(x)[0].pow(2).sum()).backward()
            torch.nn.utils.clip_grad_norm_(lstm.parameters(), 0.5)
            opt.step()
            opt.zero_grad()
    monitor.close()


def test_monitor_report_reads_a_run_being_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _small_run(tmp_path, 5)
    log = tmp_path / "monitor.jsonl"
    text = log.read_text()
    log.write_text(text + text.splitlines()[-1][:50])  # a writer caught mid-line
    capsys.readouterr()
    run(["monitor", str(tmp_path), "--out", str(tmp_path / "fig"), "--json"])
    report = MonitorReport.from_dict(json.loads(capsys.readouterr().out))
    assert (report.steps, report.first, report.last) == (5, 0, 4)
    steps = [r for r in gradtrace.load(log) if not isinstance(r, gradtrace.records.MonitorRun)]
    shares = [
        next(p for p in s.profiles).recurrent_share[:-1].mean().item()
        for s in steps  # type: ignore[union-attr]
    ]
    assert (
        f"went from {shares[0]:.1%} at step 0 to {shares[-1]:.1%} at step 4" in report.verdicts[0]
    )
    clipped = sum(s.clip.acted for s in steps)  # type: ignore[union-attr]
    assert any(f"Clipping acted on {clipped} of 5 recorded steps" in v for v in report.verdicts)
    for name in ("profile.png", "norms.png", "shares.png", "lags.png"):
        assert (tmp_path / "fig" / name).read_bytes().startswith(PNG)
    assert (tmp_path / "fig" / "report.md").is_file()


def test_monitor_refuses_what_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        run(["monitor", str(tmp_path / "missing")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gradtrace: error: `RUN` must be a monitored run's folder")


def test_monitor_names_the_run_when_its_log_is_not_a_monitors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "wrong.jsonl"
    log.write_text('{"format": "gradtrace.gradient_flow/1"}\n')
    with pytest.raises(SystemExit) as done:
        run(["monitor", str(log)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gradtrace: error: `RUN` {str(log)!r} is not a monitored run's log: ")
    assert err.count("\n") == 1
