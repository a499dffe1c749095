"""Sweeps: a spec checked whole before any run, resumable after SIGKILL, Dask = local.

References: the closed forms of `sweep_runners.arithmetic` for every stored number; the rows
committed before a kill, compared byte for byte with the rows after the restart; an in-process
`gradtrace.training.run_config` for the metrics of both backends (exactly equal: the same seed
draws the same run, on one thread); the store file's bytes before and after a refused spec.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import sweep_runners
from gradtrace.cli.main import run as cli
from gradtrace.errors import GradtraceError
from gradtrace.store import ResultsStore, connect
from gradtrace.sweeps import load_spec, parse_spec, run_configs, run_sweep

TESTS = Path(__file__).resolve().parent
BASE = 'task = "adding"\nhidden_size = 8\nbatch_size = 8\nsteps = 5\neval_every = 5\n'
BASE += "test_size = 16\ntrace_size = 2\n"
SPEC = f'name = "toy"\n[base]\n{BASE}[grid]\nmodel = ["tanh", "lstm"]\nlength = [10, 20]\n'


def write_spec(folder: Path, text: str = SPEC, name: str = "toy.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def seeds_spec(folder: Path, n: int) -> Path:
    seeds = ", ".join(str(s) for s in range(n))
    return write_spec(
        folder, f'name = "toy"\n[base]\n{BASE}model = "tanh"\n[grid]\nseed = [{seeds}]\n'
    )


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI in-process: (exit status, stdout, stderr)."""
    try:
        cli(argv)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def rows_of(path: Path) -> dict[str, tuple[Any, ...]]:
    """Every row of `runs`, as SQLite holds it, by key."""
    db = connect(path)
    rows = {row[0]: row for row in db.execute("SELECT * FROM runs")}
    db.close()
    return rows


@pytest.fixture
def workers_find_the_runners(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes (spawned, Dask's, a subprocess's) import `sweep_runners` too."""
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path.rstrip(os.pathsep))


# ---------------------------------------------------------------- the spec


def test_the_grid_expands_in_order_with_every_field_filled(tmp_path: Path) -> None:
    from gradtrace.training import TrainConfig

    spec = load_spec(write_spec(tmp_path))
    assert spec.name == "toy" and spec.default_store() == tmp_path / "toy.sqlite"
    pairs = [(c["model"], c["length"]) for c in spec.configs]
    assert pairs == [("tanh", 10), ("tanh", 20), ("lstm", 10), ("lstm", 20)]  # last axis fastest
    assert all(c == TrainConfig.from_dict(c).to_dict() for c in spec.configs)
    assert spec.keys == tuple(TrainConfig.from_dict(c).key() for c in spec.configs)
    assert spec.labels[1] == "model='tanh', length=20"


def test_a_remedy_is_an_axis_like_any_field(tmp_path: Path) -> None:
    text = (
        f'[base]\n{BASE}model = "tanh"\n[grid]\nclip = ["norm", "none"]\nreverse = [false, true]\n'
    )
    spec = load_spec(write_spec(tmp_path, text, "remedies.toml"))
    assert spec.name == "remedies"  # the file's stem without a name
    assert [(c["clip"], c["reverse"]) for c in spec.configs] == [
        ("norm", False),
        ("norm", True),
        ("none", False),
        ("none", True),
    ]


BAD_SPECS = {
    "unknown-task": (SPEC.replace('"adding"', '"juggling"'), "`task` must be one of"),
    "unknown-model": (SPEC.replace('"lstm"', '"transformer"'), "`model` must be one of"),
    "unknown-axis": (SPEC + "colour = [1, 2]\n", "unknown config field 'colour'"),
    "unknown-field": (SPEC.replace("steps = 5", "stepz = 5"), "unknown config field 'stepz'"),
    "negative-length": (SPEC.replace("[10, 20]", "[10, -5]"), "`length` must be a whole number"),
    "no-mnist-path": (SPEC.replace('"adding"', '"mnist"'), "give `mnist_path`"),
    "missing-mnist-path": (
        SPEC.replace('"adding"', '"mnist"\nmnist_path = "/no/such/mnist.npz"'),
        "`mnist_path` must be an existing folder",
    ),
    "malformed-toml": (SPEC.replace('task = "adding"', "task = adding"), "not valid TOML.*line 3"),
    "empty-axis": (SPEC.replace("[10, 20]", "[]"), "axis `length` .* at least one value"),
    "scalar-axis": (SPEC.replace("[10, 20]", "10"), "axis `length` .* must be a list"),
    "axis-in-base": (SPEC + "steps = [1, 2]\n", "both in \\[base\\] and an axis"),
    "top-level-field": ("seed = 1\n" + SPEC, "unknown key 'seed' at the top"),
    "a-run-twice": (SPEC.replace("[10, 20]", "[10, 10]"), "gives one run twice"),
}


@pytest.mark.parametrize("text, message", list(BAD_SPECS.values()), ids=list(BAD_SPECS))
def test_a_bad_spec_is_one_sentence_before_any_run(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "toy.sqlite"  # the default store of the spec, already holding a run
    with ResultsStore(store) as db:
        db.put(sweep_runners.arithmetic(load_spec(write_spec(tmp_path)).configs[0]), sweep="toy")
    data = store.read_bytes()
    spec = write_spec(tmp_path, text)
    with pytest.raises(GradtraceError, match=message) as caught:
        load_spec(spec)
    assert "\n" not in str(caught.value)
    code, out, err = invoke(["sweep", "run", str(spec)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("gradtrace: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert store.read_bytes() == data  # the store was never opened for writing


def test_a_spec_that_is_missing_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _out, err = invoke(["sweep", "run", str(tmp_path / "none.toml")], capsys)
    assert code == 2 and "`SPEC` must be an existing TOML file" in err


def test_a_custom_validator_replaces_train_config() -> None:
    seen: list[dict[str, Any]] = []

    def validate(config: dict[str, Any]) -> dict[str, Any]:
        seen.append(config)
        return {**config, "checked": True}

    spec = parse_spec({"name": "x", "grid": {"a": [1, 2]}}, validate=validate)
    assert spec.configs == ({"a": 1, "checked": True}, {"a": 2, "checked": True})
    assert seen == [{"a": 1}, {"a": 2}]


# ---------------------------------------------------------------- running


def test_each_run_is_stored_with_its_status_and_a_failure_does_not_stop_the_sweep(
    tmp_path: Path,
) -> None:
    base = BASE.replace("hidden_size = 8\n", "")  # an axis here
    text = f'name = "mixed"\n[base]\n{base}model = "tanh"\nlength = 10\n'
    text += "[grid]\nhidden_size = [8, 13]\nlr = [0.001, 2.0]\n"
    spec = load_spec(write_spec(tmp_path, text))
    store = tmp_path / "mixed.sqlite"
    summary = run_sweep(spec, store, workers=2, runner=sweep_runners.arithmetic, progress=False)
    assert (summary.total, summary.finished, summary.diverged, summary.failed) == (4, 1, 1, 2)
    assert summary.failures[0] == (
        "hidden_size=13, lr=0.001",
        "RuntimeError: thirteen hidden units are unlucky",
    )
    with ResultsStore(store, readonly=True) as db:
        rows = {(r["config"]["hidden_size"], r["config"]["lr"]): r for r in db.rows()}
    assert rows[8, 0.001]["metrics"]["final_test_loss"] == 1 / 10
    assert rows[8, 2.0]["status"] == "diverged"
    assert rows[8, 2.0]["metrics"]["max_grad_norm"] == "Infinity"
    assert rows[13, 2.0]["status"] == "failed"
    assert rows[13, 2.0]["error"] == "RuntimeError: thirteen hidden units are unlucky"
    again = run_sweep(spec, store, workers=1, runner=sweep_runners.arithmetic, progress=False)
    assert (again.skipped, again.failed) == (2, 2)  # the failed runs are tried again


def test_the_failures_shown_are_in_the_spec_order_whichever_worker_ends_first(
    tmp_path: Path,
) -> None:
    # Regression: they were in the order the runs ended, so with two workers the summary (and
    # the test above) depended on which failing run finished first.
    base = BASE.replace("hidden_size = 8\n", "")
    text = f'name = "order"\n[base]\n{base}model = "tanh"\nlength = 10\n'
    text += "[grid]\nhidden_size = [8, 13]\nlr = [0.001, 2.0]\n"
    spec = load_spec(write_spec(tmp_path, text))
    summary = run_sweep(
        spec,
        tmp_path / "order.sqlite",
        workers=2,
        runner=sweep_runners.first_failure_last,
        progress=False,
    )
    assert [label for label, _ in summary.failures] == [
        "hidden_size=13, lr=0.001",
        "hidden_size=13, lr=2.0",
    ]


def test_a_killed_sweep_resumes_with_each_run_once_and_finished_rows_untouched(
    tmp_path: Path, workers_find_the_runners: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 16
    spec_path, store = seeds_spec(tmp_path, n), tmp_path / "toy.sqlite"
    script = (
        "import sweep_runners; from gradtrace.sweeps import load_spec, run_sweep; "
        f"run_sweep(load_spec({str(spec_path)!r}), {str(store)!r}, workers=2, "
        "runner=sweep_runners.arithmetic, progress=False)"
    )
    env = {**os.environ, sweep_runners.SLEEP_VARIABLE: "0.3"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (store.exists() and len(rows_of(store)) >= 4):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the scheduling process only, mid-sweep
        proc.wait()
        before = rows_of(store)
        assert 4 <= len(before) < n
        assert _workers_exit(proc.pid), "a worker ran on after its sweep was killed"
    finally:
        _kill_group(proc.pid)
        proc.wait()  # reaped even when the test fails early: no process left for the next one
    spec = load_spec(spec_path)
    summary = run_sweep(spec, store, workers=2, runner=sweep_runners.arithmetic, progress=False)
    assert (summary.skipped, summary.finished) == (len(before), n - len(before))
    after = rows_of(store)
    assert set(after) == set(spec.keys)  # each run once: the key is the primary key
    for key, row in before.items():
        assert after[key] == row  # record JSON, finished_at and all, byte for byte


def test_ctrl_c_stops_the_sweep_and_its_workers_at_once_and_it_resumes(
    tmp_path: Path, workers_find_the_runners: None
) -> None:
    # SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the workers leave it
    # to the sweep, which ends them at once and says what the store holds (a sweep with two
    # workers hung until killed); every run stored before it is kept, and a rerun does the rest.
    n = 16
    spec_path, store = seeds_spec(tmp_path, n), tmp_path / "toy.sqlite"
    script = (
        "import sys, sweep_runners; from gradtrace.sweeps import load_spec, run_sweep\n"
        "try:\n"
        f"    run_sweep(load_spec({str(spec_path)!r}), {str(store)!r}, workers=2, "
        "runner=sweep_runners.arithmetic, progress=False)\n"
        "except KeyboardInterrupt as stop:\n"
        "    print(stop); sys.exit(130)\n"
    )
    env = {**os.environ, sweep_runners.SLEEP_VARIABLE: "0.3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, start_new_session=True,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (store.exists() and len(rows_of(store)) >= 4):
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 130
        assert _workers_exit(proc.pid), "a worker ran on after Ctrl-C"
    finally:
        _kill_group(proc.pid)
        proc.wait()
    before = rows_of(store)
    assert out.strip() == (
        f"sweep toy stopped with {len(before)} of {n} runs in {store}; run it again to resume"
    )
    summary = run_sweep(load_spec(spec_path), store, workers=2, runner=sweep_runners.arithmetic,
                        progress=False)  # fmt: skip
    assert (summary.skipped, summary.finished) == (len(before), n - len(before))


def test_the_command_says_what_an_interrupted_sweep_left_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradtrace.sweeps import run as sweep_run

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise sweep_run.SweepInterrupted("sweep toy stopped with 3 of 16 runs in s.sqlite; ...")

    monkeypatch.setattr("gradtrace.sweeps.run_sweep", interrupted)
    with pytest.raises(SystemExit) as done:
        cli(["sweep", "run", str(seeds_spec(tmp_path, 4))])
    assert done.value.code == 130
    assert capsys.readouterr().err.splitlines() == [
        "gradtrace: sweep toy stopped with 3 of 16 runs in s.sqlite; ...",
        "gradtrace: interrupted.",
    ]


def _workers_exit(group: int, seconds: float = 10.0) -> bool:
    """Whether every live process of the session `group` ends within `seconds`."""
    if not Path("/proc/self/stat").exists():
        return True
    deadline = time.time() + seconds
    while time.time() < deadline:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == group and fields[0] != "Z":  # fields: state, ppid, pgrp
                alive.append(stat)
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)  # the group this test started, if any is left


def test_a_reader_never_sees_an_error_or_half_a_row_while_the_sweep_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    monkeypatch.setenv(sweep_runners.SLEEP_VARIABLE, "0.1")
    n = 12
    spec = load_spec(seeds_spec(tmp_path, n))
    store = tmp_path / "toy.sqlite"
    ResultsStore(store).close()
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def poll() -> None:
        db = connect(store)
        while not stop.is_set():
            try:
                db.execute("BEGIN")  # one snapshot for both reads
                frame = pd.read_sql("select * from runs_flat", db)
                rows = db.execute("select config, metrics, record, finished_at from runs")
                rows = rows.fetchall()
                db.execute("COMMIT")
                assert len(frame) == len(rows)
                if rows:  # the view's metric columns come with the first run's metrics
                    assert frame["final_test_loss"].notna().all()
                for config, metrics, text, finished_at in rows:
                    whole = json.loads(text)
                    assert whole["config"] == json.loads(config) and finished_at
                    assert whole["metrics"] == json.loads(metrics)
                    assert set(whole) >= {"config", "status", "metrics", "seconds", "curves"}
                seen.append(len(rows))
            except BaseException as error:
                errors.append(error)
                return
            time.sleep(0.01)
        db.close()

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        run_sweep(spec, store, workers=2, runner=sweep_runners.arithmetic, progress=False)
    finally:
        stop.set()
        reader.join()
    assert not errors, errors
    assert seen == sorted(seen) and len({s for s in seen if 0 < s < n}) > 0  # seen mid-sweep


def test_dask_gives_the_local_backends_metrics(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from gradtrace.training import run_config

    text = f'name = "toy"\n[base]\n{BASE}length = 10\n[grid]\nmodel = ["tanh", "gru"]\n'
    spec = load_spec(write_spec(tmp_path, text + "seed = [0, 1]\n"))
    run_sweep(spec, tmp_path / "local.sqlite", workers=2, progress=False)
    run_sweep(spec, tmp_path / "dask.sqlite", workers=2, dask="local", progress=False)
    reference = {k: run_config(c) for k, c in zip(spec.keys, spec.configs, strict=True)}
    for name in ("local", "dask"):
        with ResultsStore(tmp_path / f"{name}.sqlite", readonly=True) as db:
            got = {k: db.get(k) for k in spec.keys}
        for key, want in reference.items():
            run = got[key]
            assert run is not None and run["status"] == "finished", name
            assert (run["metrics"], run["curves"]) == (want["metrics"], want["curves"]), name


def test_dask_missing_names_the_extra_before_the_store_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    spec = load_spec(write_spec(tmp_path))
    with pytest.raises(GradtraceError, match=r"pip install 'gradtrace\[dask\]'"):
        run_sweep(spec, tmp_path / "toy.sqlite", dask="local", progress=False)
    assert not (tmp_path / "toy.sqlite").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"workers": 0}, "`workers` must be a whole number >= 1"),
        ({"dask": "127.0.0.1:8786"}, "`dask` must be 'local' or a scheduler's address"),
        ({"dask": "tcp://127.0.0.1:8786", "workers": 2}, "leave `workers` out"),
        ({"runner": lambda config: config}, "`runner` must be a module-level function"),
    ],
    ids=["workers", "address", "workers-with-a-scheduler", "lambda-runner"],
)
def test_bad_sweep_arguments_are_refused_before_the_store_is_made(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    spec = load_spec(write_spec(tmp_path))
    with pytest.raises(GradtraceError, match=message):
        run_sweep(spec, tmp_path / "toy.sqlite", progress=False, **options)
    assert not (tmp_path / "toy.sqlite").exists()


def test_run_configs_checks_every_config_and_runs_a_repeated_one_once(tmp_path: Path) -> None:
    config = {"task": "adding", "model": "tanh", "length": 10, "hidden_size": 8}
    store = tmp_path / "s.sqlite"
    with pytest.raises(GradtraceError, match="`configs` item 1: `length` must be"):
        run_configs([config, {**config, "length": -1}], store, progress=False)
    assert not store.exists()
    summary = run_configs(
        [config, dict(config), {**config, "seed": 1}],
        store,
        workers=1,
        runner=sweep_runners.arithmetic,
        progress=False,
    )
    assert (summary.total, summary.finished) == (2, 2)


# ---------------------------------------------------------------- the command


def test_the_command_runs_a_sweep_into_the_store_beside_the_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, SPEC.replace("[10, 20]", "[10]"))
    code, out, err = invoke(["sweep", "run", str(spec), "--workers", "2"], capsys)
    assert (code, err) == (0, "")
    assert "2 runs, 2 ran (2 finished, 0 diverged, 0 failed), 0 skipped" in out
    assert f"store: {tmp_path / 'toy.sqlite'}" in out
    code, out, _ = invoke(["sweep", "run", str(spec), "--json"], capsys)
    assert code == 0 and json.loads(out)["skipped"] == 2
    parquet = tmp_path / "toy.parquet"
    code, out, err = invoke(
        ["sweep", "export", str(tmp_path / "toy.sqlite"), "--parquet", str(parquet)], capsys
    )
    assert (code, err, out.strip()) == (0, "", f"wrote {parquet}")


def test_export_needs_a_file_to_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ResultsStore(tmp_path / "s.sqlite").close()
    code, out, err = invoke(["sweep", "export", str(tmp_path / "s.sqlite")], capsys)
    assert (code, out) == (2, "") and "give `--parquet` or `--csv`" in err
    code, _, err = invoke(
        ["sweep", "export", str(tmp_path / "none.sqlite"), "--csv", "x.csv"], capsys
    )
    assert code == 2 and "`STORE` must be an existing gradtrace results store" in err


@pytest.mark.parametrize(("flag", "suffix"), [("--parquet", ".parquet"), ("--csv", ".csv")])
def test_export_refuses_a_file_of_another_kind_and_writes_nothing(
    flag: str, suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ResultsStore(tmp_path / "s.sqlite").close()
    target = tmp_path / "out.txt"  # a new user's Parquet export went to out.txt, exit 0
    code, out, err = invoke(
        ["sweep", "export", str(tmp_path / "s.sqlite"), flag, str(target)], capsys
    )
    assert (code, out) == (2, "")
    assert f"`{flag}` must end in {suffix}" in err
    assert not target.exists()


@pytest.mark.parametrize("command", ["run", "export"])
def test_each_sweep_command_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invoke(["sweep", command, "--help"], capsys)
    assert (code, err) == (0, "") and "Example: gradtrace sweep " + command in out


@pytest.mark.parametrize("path", sorted((TESTS.parent / "examples" / "sweeps").glob("*.toml")))
def test_the_example_specs_are_valid_sweeps(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem and len(spec.configs) >= 2
