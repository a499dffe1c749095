"""The report of a monitored run: figures and a short verdict in words.

`monitor_report(run, out)` reads a run's log (a folder holding `monitor.jsonl`, or the file;
a log still being written reads up to its last complete line), draws its figures into `out`
(`gradtrace.plots.monitor`), and writes `report.md` beside them with the verdict:

    - when the recurrent share of a layer falls below 1 % and stays there ("from step 1,200
      the recurrent share of rnn layer 0 forward stays below 1 %: it no longer carries
      gradient back more than K = 35 steps"), or where it ends;
    - how the gradient norm moved over training, how often clipping acted, and any misuse;
    - the first step that went non-finite, and where;
    - how the memory horizon of the full traces moved, and the lag shares at the end.

It returns a `MonitorReport` record, which the CLI prints.
"""

from __future__ import annotations

import math
from pathlib import Path

from gradtrace.errors import GradtraceError, check
from gradtrace.io.files import check_output_folder, write_text_atomic
from gradtrace.records.files import load
from gradtrace.records.monitor import MonitorReport, MonitorRun, MonitorStep

FLOOR = 0.01  # a recurrent share below 1 % means the layer has stopped using its past


def read_run(run: str | Path) -> tuple[MonitorRun | None, list[MonitorStep]]:
    """The header and the step records of a run's log (its last run, if it holds several).

    Raises:
        GradtraceError: if `run` is neither a folder with monitor.jsonl nor a .jsonl file, or
            holds something other than monitor records.
    """
    path = Path(run)
    if path.is_dir():
        path = path / "monitor.jsonl"
    check(
        path.suffix == ".jsonl" and path.is_file(),
        f"`run` must be a monitored run's folder (holding monitor.jsonl) or its .jsonl log, "
        f"got {str(run)!r}",
    )
    try:
        records = load(path)
    except GradtraceError as err:  # a log of something else, or damaged beyond a torn line
        raise GradtraceError(f"`run` {str(path)!r} is not a monitored run's log: {err}") from None
    assert isinstance(records, list)  # a .jsonl log
    check(
        all(isinstance(r, MonitorRun | MonitorStep) for r in records),
        f"`run` {str(path)!r} holds records other than a monitor's",
    )
    # A log may hold several runs (a monitor started again on the same folder appends a new
    # header): the last one is the run.
    starts = [i for i, r in enumerate(records) if isinstance(r, MonitorRun)]
    last = records[starts[-1] :] if starts else records
    header = last[0] if starts else None
    assert header is None or isinstance(header, MonitorRun)
    steps = [r for r in last if isinstance(r, MonitorStep)]
    return header, sorted(steps, key=lambda s: s.step)


def _share_verdicts(steps: list[MonitorStep]) -> list[str]:
    lines = []
    labels: dict[str, None] = {}
    for s in steps:
        for p in s.profiles:
            labels[p.label] = None
    for label in labels:
        # a step that went non-finite has no share to speak of: its gradients are NaN or inf
        series = [
            (s.step, p)
            for s in steps
            if s.nonfinite is None
            for p in s.profiles
            if p.label == label
        ]
        if not series:
            continue
        shares = [(step, p.mean_recurrent_share, p.chunk) for step, p in series]
        shares = [(step, v, k) for step, v, k in shares if math.isfinite(v)]
        if not shares:
            short = series[-1][1]
            if len(short.boundaries) == 1:  # T <= K: no boundary before the last step
                lines.append(
                    f"The recurrent share of {label} is not measured: its T = {short.steps} "
                    f"steps end before the first chunk boundary (K = {short.chunk}); pass a "
                    "chunk below T to the monitor."
                )
            continue
        tail = len(shares)  # shares[tail:] is the run of recorded steps below the floor
        while tail > 0 and shares[tail - 1][1] < FLOOR:
            tail -= 1
        if tail < len(shares):
            step, _, chunk = shares[tail]
            lines.append(
                f"From step {step:,} the recurrent share of {label} stays below 1 %: almost no "
                f"gradient crosses its chunk boundaries any more, so it no longer learns from "
                f"inputs more than K = {chunk} steps back."
            )
        else:
            first, last = shares[0], shares[-1]
            lines.append(
                f"The recurrent share of {label} went from {first[1]:.1%} at step {first[0]:,} "
                f"to {last[1]:.1%} at step {last[0]:,} (the part of dL/dh_b, every K = {last[2]} "
                "steps, that flows back through time from the steps after b)."
            )
    return lines


def _norm_verdicts(steps: list[MonitorStep]) -> list[str]:
    lines = []
    finite = [s for s in steps if math.isfinite(s.grad_norm) and s.grad_norm > 0]
    if len(finite) >= 2:
        change = math.log10(finite[-1].grad_norm / finite[0].grad_norm)
        word = "grew" if change > 0 else "shrank"
        lines.append(
            f"The global gradient norm {word} by {abs(change):.2g} decades, from "
            f"{finite[0].grad_norm:.3g} at step {finite[0].step:,} to {finite[-1].grad_norm:.3g} "
            f"at step {finite[-1].step:,}."
        )
    clipped = [s for s in steps if s.clip is not None]
    if clipped:
        acted = sum(s.clip.acted for s in clipped if s.clip is not None)
        fraction = clipped[-1].clip.clipped_fraction if clipped[-1].clip else math.nan
        lines.append(
            f"Clipping acted on {acted} of {len(clipped)} recorded steps, and on {fraction:.0%} "
            f"of every step seen up to step {clipped[-1].step}."
        )
    at: dict[str, list[int]] = {}
    for s in steps:
        for w in s.warnings:
            at.setdefault(w, []).append(s.step)
    for w, numbers in sorted(at.items()):
        shown = ", ".join(f"{n:,}" for n in numbers[:5])
        more = f" and {len(numbers) - 5} more" if len(numbers) > 5 else ""
        lines.append(f"Warning (step{'s' if len(numbers) > 1 else ''} {shown}{more}): {w}.")
    bad = next((s for s in steps if s.nonfinite is not None), None)
    if bad is not None and bad.nonfinite is not None:
        lines.append(f"Step {bad.step:,} went non-finite: {bad.nonfinite.note}.")
    return lines


def _trace_verdicts(steps: list[MonitorStep]) -> list[str]:
    traced = [s for s in steps if s.trace is not None]
    if not traced:
        return []
    first, last = traced[0].trace, traced[-1].trace
    assert first is not None and last is not None
    lines = []
    for a in first.layers:
        b = next((r for r in last.layers if r.label == a.label), None)
        if len(traced) == 1:
            lines.append(
                f"The exact trace of {a.label} at step {traced[0].step:,}: {a.verdict}, memory "
                f"horizon {a.horizon} of {a.steps} steps."
            )
        elif b is not None:
            lines.append(
                f"The exact trace of {a.label} went from {a.verdict} (memory horizon {a.horizon} "
                f"of {a.steps} steps) at step {traced[0].step:,} to {b.verdict} (horizon "
                f"{b.horizon} of {b.steps}) at step {traced[-1].step:,}."
            )
    return lines


def _lag_verdicts(steps: list[MonitorStep]) -> list[str]:
    lagged = [s for s in steps if any(p.lag_shares is not None for p in s.profiles)]
    last = lagged[-1] if lagged else None
    if last is None:
        return []
    lines = []
    for prof in last.profiles:
        if prof.lag_shares is None:
            continue
        parts = [
            f"{float(prof.lag_shares[i, 0]):.0%} from >= {d} steps later"
            for i, d in enumerate(prof.lags)
            if math.isfinite(float(prof.lag_shares[i, 0]))
        ]
        if parts:
            lines.append(
                f"At step {last.step:,}, dL/dh_{prof.boundaries[0]} of {prof.label}: "
                + ", ".join(parts) + "."
            )  # fmt: skip
    return lines


def monitor_report(run: str | Path, out: str | Path) -> MonitorReport:
    """Figures and a verdict for a monitored run (see the module docstring).

    Raises:
        GradtraceError: if `run` is not a monitored run, holds no step yet, or `out` cannot be
            written.
    """
    header, steps = read_run(run)
    check(bool(steps), f"`run` {str(run)!r} holds no monitored step yet")
    folder = check_output_folder(out, "out")
    folder.mkdir(parents=True, exist_ok=True)
    from gradtrace.plots.monitor import (
        plot_run_lags,
        plot_run_norms,
        plot_run_profile,
        plot_run_shares,
    )

    figures = [
        plot_run_profile(steps, folder / "profile.png"),
        plot_run_norms(steps, folder / "norms.png"),
        plot_run_shares(steps, folder / "shares.png"),
    ]
    if any(p.lag_shares is not None for s in steps for p in s.profiles):
        figures.append(plot_run_lags(steps, folder / "lags.png"))
    verdicts = (
        _share_verdicts(steps) + _norm_verdicts(steps) + _trace_verdicts(steps)
        + _lag_verdicts(steps)
    )  # fmt: skip
    title = header.model if header is not None else "model"
    text = [f"# Monitored run of {title}", ""]
    text += [f"- {line}" for line in verdicts] + [""]
    text += [f"![{f.stem}]({f.name})" for f in figures]
    report = folder / "report.md"
    write_text_atomic(report, "\n".join(text) + "\n")
    return MonitorReport(
        run=str(run),
        steps=len(steps),
        first=steps[0].step,
        last=steps[-1].step,
        verdicts=tuple(verdicts),
        figures=tuple(str(f) for f in [*figures, report]),
    )
