"""`gradtrace reproduce`: run every claim's runs as one sweep, judge them, write the report.

The runs go through the sweep machinery into `OUT/runs.sqlite`, so a reproduction that is
interrupted resumes where it stopped, runs shared by several claims are made once, and a
second call only re-judges (seconds). The report folder gets `table.md` (claim, paper,
measured, pass), one figure per claim (learning curves and the exact contribution curves
before and after training), one figure of the monitor's through-time profile over training
per model, and `reproduction.json` (the `Reproduction` record).
"""

from __future__ import annotations

import time
from pathlib import Path

from gradtrace.errors import check
from gradtrace.io.files import check_output_folder, write_atomic
from gradtrace.plots.figure import plt, save
from gradtrace.plots.monitor import draw_profile_heatmap
from gradtrace.plots.training import plot_runs
from gradtrace.records.files import save as save_record
from gradtrace.records.reproduce import ClaimResult, Reproduction
from gradtrace.records.training import TrainRun
from gradtrace.reproduce.claims import Claim, cpu_claims, full_claims
from gradtrace.store import ResultsStore
from gradtrace.sweeps import check_arguments, run_configs, train_runner
from gradtrace.training import TrainConfig

PROTOCOLS = ("quick", "cpu", "full")
STORE_NAME = "runs.sqlite"


def claims_of(protocol: str) -> list[Claim]:
    """The claims of a protocol: "quick" (the subset `make test` runs), "cpu" or "full"."""
    check(
        protocol in PROTOCOLS,
        f"`protocol` must be one of {', '.join(PROTOCOLS)}, got {protocol!r}",
    )
    if protocol == "full":
        return full_claims()
    claims = cpu_claims()
    return [c for c in claims if c.quick] if protocol == "quick" else claims


def reproduce(
    out: str | Path,
    *,
    protocol: str = "cpu",
    workers: int | None = None,
    dask: str | None = None,
    show_progress: bool = True,
) -> Reproduction:
    """Check the published claims with runs made here, and write the table and figures.

    Args:
        out: The report folder (created; an existing store in it is resumed).
        protocol: "cpu" (ten claims, 3.5 minutes measured on 2 cores), "quick" (the
            subset `make test` runs) or "full" (the papers' longer protocol, for a GPU).
        workers: Local worker processes (default: one per core).
        dask: A Dask scheduler's address, or "local" for a LocalCluster on 127.0.0.1.
        show_progress: A progress bar on a terminal.

    Returns:
        The `Reproduction` record (also written as OUT/reproduction.json).
    """
    claims = claims_of(protocol)
    folder = check_output_folder(out, "out")
    check_arguments(workers, dask, train_runner)  # before the folder is made
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    configs = [TrainConfig.from_dict(c) for claim in claims for c in claim.runs]
    unique = list({c.key(): c for c in configs}.values())
    store_path = folder / STORE_NAME
    run_configs(
        [c.to_dict() for c in unique],
        store_path,
        name=f"reproduce-{protocol}",
        workers=workers,
        dask=dask,
        progress=show_progress,
    )
    records, failures = _records(store_path)
    results = []
    figures: list[str] = []
    for claim in claims:
        keys = [TrainConfig.from_dict(c).key() for c in claim.runs]
        failed = [failures[k] for k in keys if k not in records]
        runs = [records[k] for k in keys if k in records]
        if failed:  # a run that raised fails its claims, in words; the store keeps its error
            measured, passed = f"{len(failed)} run(s) failed: {failed[0]}", False
        else:
            measured, passed = claim.judge(runs)
        results.append(
            ClaimResult(
                name=claim.name,
                claim=claim.claim,
                paper=claim.paper,
                criterion=claim.criterion,
                measured=measured,
                passed=passed,
                runs=tuple(keys),
            )
        )
        path = plot_runs(runs, folder / f"{claim.name}.png", f"{claim.name}: {claim.claim}")
        figures.append(str(path))
    figures.append(str(_plot_profiles(list(records.values()), folder / "profiles.png")))
    report = Reproduction(
        protocol=protocol,
        claims=tuple(results),
        seconds=time.perf_counter() - started,
        run_seconds=sum(r.seconds for r in records.values()),
        store=str(store_path),
        figures=(*figures, str(folder / "table.md")),
    )
    write_atomic(folder / "table.md", lambda tmp: tmp.write_text(_markdown(report)))
    save_record(report, folder / "reproduction.json")
    return report


def _records(store_path: Path) -> tuple[dict[str, TrainRun], dict[str, str]]:
    """The runs by key, and the errors of the runs that raised (rows without a record)."""
    runs: dict[str, TrainRun] = {}
    failures: dict[str, str] = {}
    with ResultsStore(store_path, readonly=True) as db:
        for row in db.rows():
            if row["status"] == "failed":
                failures[row["key"]] = str(row.get("error"))
                continue
            run = TrainRun.from_dict(row["record"])
            runs[TrainConfig.from_dict(run.config).key()] = run
    return runs, failures


def _plot_profiles(runs: list[TrainRun], path: Path) -> Path:
    """The monitor's through-time profile over training, seed 0 of each model and task."""
    chosen: dict[str, TrainRun] = {}
    for run in runs:
        c = run.config
        label = f"{c['model']} on {c['task']} T={c['length']}" + (" rev" if c["reverse"] else "")
        if run.profiles and c["seed"] == 0 and label not in chosen:
            chosen[label] = run
    n = max(1, len(chosen))
    cols = 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12.0, 2.8 * rows), squeeze=False)
    for ax, (label, run) in zip(axes.flat, sorted(chosen.items()), strict=False):
        series = list(zip((int(s) for s in run.curves["monitor_step"]), run.profiles, strict=True))
        image = draw_profile_heatmap(ax, series, label)
        fig.colorbar(image, ax=ax, label="log10 norm")
    for ax in list(axes.flat)[len(chosen) :]:
        ax.set_visible(False)
    return save(fig, path)


def _markdown(report: Reproduction) -> str:
    done = sum(c.passed for c in report.claims)
    return (
        f"# Reproduction ({report.protocol} protocol)\n\n{report.table()}\n\n"
        f"{done} of {len(report.claims)} claims pass; {report.seconds:.0f} s for this call, "
        f"{report.run_seconds:.0f} s of runs.\n"
    )
