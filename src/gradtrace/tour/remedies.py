"""The remedies (lectures 000 section 1.6 and 003): the reproduction's table and figures when
`make reproduce` has run, otherwise two short training runs made on the spot.

The reproduction (`gradtrace reproduce`, ten published claims, about 4 minutes) is read
from its report folder, OUT/reproduction.json (a `Reproduction` record) and the figures beside
it. Without one, the tour trains a tanh RNN and a GRU on the adding problem at T = 50 for 400
steps each (seconds on a CPU): the claim checked is the reproduction's "a vanilla RNN stays at
the baseline while a gated one learns", with the same criterion.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from gradtrace.errors import check
from gradtrace.plots.training import plot_runs
from gradtrace.records.files import load
from gradtrace.records.reproduce import Reproduction
from gradtrace.records.training import TrainRun
from gradtrace.tour.embed import file_figure
from gradtrace.tour.page import Figure, Section, esc, num, para, table
from gradtrace.training import train

REPRODUCTION_FILE = "reproduction.json"
DEFAULT_REPRODUCTION = Path("out/reproduce")  # where `make reproduce` writes, from the repo
_LIVE = {
    "task": "adding",
    "length": 50,
    "hidden_size": 32,
    "batch_size": 32,
    "steps": 400,
    "eval_every": 50,
    "test_size": 256,
    "trace_size": 4,
    "seed": 0,
}
LIVE_RUNS: dict[str, dict[str, Any]] = {
    "tanh": {**_LIVE, "model": "tanh", "lr": 1e-3},
    "gru": {**_LIVE, "model": "gru", "lr": 1e-2},
}
BASELINE_RATIO, LEARNED_RATIO = 0.9, 0.1  # best MSE / variance: stayed at the mean / learned


def find_reproduction(folder: Path = DEFAULT_REPRODUCTION) -> Path | None:
    """`folder` if it holds a reproduction's report (relative to the working directory)."""
    return folder if (folder / REPRODUCTION_FILE).is_file() else None


def load_reproduction(folder: str | Path, name: str = "reproduction") -> Reproduction:
    """The `Reproduction` record of a report folder.

    Raises:
        GradtraceError: if `folder` is not a folder holding a readable reproduction.json.
    """
    path = Path(folder)
    check(
        (path / REPRODUCTION_FILE).is_file(),
        f"`{name}` must be a folder holding {REPRODUCTION_FILE} (as `gradtrace reproduce` "
        f"writes), got {str(path)!r}",
    )
    record = load(path / REPRODUCTION_FILE)
    check(
        isinstance(record, Reproduction),
        f"`{name}` must hold a reproduction record in {REPRODUCTION_FILE}, got "
        f"{type(record).__name__}",
    )
    assert isinstance(record, Reproduction)
    return record


def remedies_section(found: tuple[Reproduction, Path] | None) -> Section:
    """The reproduction's table and figures, or the live runs when there is none."""
    if found is None:
        return _live_section()
    report, folder = found
    rows = [
        (
            esc(c.claim),
            esc(c.paper),
            esc(c.measured),
            esc(c.criterion),
            "yes" if c.passed else "<b>no</b>",
        )
        for c in report.claims
    ]
    figures: list[Figure] = []
    for name in report.figures:
        path = folder / Path(name).name  # the record names them as written, from its cwd
        if path.suffix == ".png" and path.is_file():
            figures.append(
                file_figure(
                    path,
                    esc(
                        f"{path.stem}: learning curves and exact "
                        "gradient flow before and after training"
                    ),
                    path.stem,
                )
            )
    done = sum(c.passed for c in report.claims)
    measured = para(
        f"The reproduction in {esc(str(folder))} ({esc(report.protocol)} protocol, "
        f"{num(report.run_seconds / 60, 3)} minutes of runs): {done} of {len(report.claims)} "
        "claims pass. Each row is judged from seeded runs made here, with the criterion stated."
    ) + table(("claim", "paper", "measured", "criterion", "pass"), rows, css="text")
    return Section(
        id="remedies",
        title="The remedies, reproduced",
        lecture="lecture 000, section 1.6, and lecture 003, keeping things stable",
        claim=_CLAIM,
        measured=measured,
        agree=report.passed,
        verdict=(
            f"all {len(report.claims)} claims about the remedies pass in runs made here."
            if report.passed
            else f"{len(report.claims) - done} of {len(report.claims)} claims fail here."
        ),
        figures=tuple(figures),
        numbers={
            "source": "reproduction",
            "protocol": report.protocol,
            "claims": {c.name: c.passed for c in report.claims},
        },
    )


_CLAIM = para(
    "Gated cells (GRU, LSTM), skip connections and gradient clipping are the cures: clipping "
    "tames exploding gradients, reversing the input shortens the dependencies, an "
    "identity-initialised ReLU RNN (Le et al. 2015) and the LSTM's memory cell keep gradients "
    "alive over long spans."
)


def _ratio(run: TrainRun) -> float:
    return run.metrics["best_test_loss"] / run.metrics["test_variance"]


def _live_section() -> Section:
    runs = {name: train(config, show_progress=False) for name, config in LIVE_RUNS.items()}
    ratios = {name: _ratio(run) for name, run in runs.items()}
    agree = ratios["tanh"] > BASELINE_RATIO and ratios["gru"] < LEARNED_RATIO
    rows = [
        (
            esc(name),
            str(run.steps),
            num(run.metrics["best_test_loss"], 3),
            num(ratios[name], 3),
            f"{num(run.metrics['horizon_before'], 3)} &rarr; "
            f"{num(run.metrics['horizon_after'], 3)}",
            num(run.metrics["dependency"], 3),
            num(run.seconds, 3),
        )
        for name, run in runs.items()
    ]
    measured = para(
        "No reproduction report was found (run <code>make reproduce</code>, or pass "
        "<code>--reproduction DIR</code>), so the tour trained two models itself: the adding "
        f"problem at T = {_LIVE['length']}, H = {_LIVE['hidden_size']}, {_LIVE['steps']} Adam "
        "steps with norm clipping at 1, seed 0. The memory horizon is that of the exact "
        "contribution curve of the trained recurrence on test sequences."
    ) + table(
        (
            "model",
            "steps",
            "best test MSE",
            "MSE / variance",
            "horizon before → after",
            "dependency",
            "seconds",
        ),
        rows,
    )
    return Section(
        id="remedies",
        title="The remedies, trained on the spot",
        lecture="lecture 000, section 1.6, and lecture 003, keeping things stable",
        claim=_CLAIM,
        measured=measured,
        agree=agree,
        verdict=(
            f"the tanh RNN stays at the baseline (MSE / variance {num(ratios['tanh'], 3)}) while "
            f"the GRU learns ({num(ratios['gru'], 3)}), by the reproduction's criterion."
            if agree
            else "the short runs do not separate the tanh RNN from the GRU by the criterion."
        ),
        figures=(record_figure_runs(list(runs.values())),),
        numbers={
            "source": "live",
            "ratios": ratios,
            "configs": LIVE_RUNS,
            "best_test_loss": {n: r.metrics["best_test_loss"] for n, r in runs.items()},
            "horizon_after": {n: r.metrics["horizon_after"] for n, r in runs.items()},
        },
        records=dict(runs),
    )


def record_figure_runs(runs: list[TrainRun]) -> Figure:
    """Several runs in the reproduction's own figure (`plot_runs`), embedded."""
    with tempfile.TemporaryDirectory(prefix="gradtrace-tour-") as folder:
        path = plot_runs(runs, Path(folder) / "runs.png", "tanh RNN and GRU on the adding problem")
        return file_figure(
            path,
            "Test loss over training (left) and the exact contribution "
            "curves before and after (right).",
            "training runs",
        )
