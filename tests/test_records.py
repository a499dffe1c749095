"""Every record kind through the one codec: lossless, strict JSON, versioned, readable back.

Reference: the record itself. For a record of every kind that gradtrace computes (small, real
runs of the library) `from_dict(to_dict(r)) == r`, which compares every field, tensors bit for
bit with NaN equal to NaN; the JSON text is strict (no NaN or Infinity tokens) and carries the
format tag; `gradtrace.load` reads it back from a .json file, and a JSON Lines log cut off mid-
line still gives every complete record. Records written by the CLI read back the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import gradtrace
from gradtrace import records
from gradtrace.cli.main import run
from gradtrace.dynamics.chaos import bifurcation
from gradtrace.dynamics.rnn_dynamics import small_rnn
from gradtrace.errors import GradtraceError
from gradtrace.records import GradientFlow, Record, TraceResult
from gradtrace.records.codec import decode_float, encode_float

F64 = torch.float64


def dead_relu_flow() -> GradientFlow:
    # Every unit switched off after step 3: exact zeros, log10 c(k) = -inf, rate -inf.
    W = 0.5 * torch.eye(3, dtype=F64)
    weights = gradtrace.cells.RNNWeights(
        W, torch.ones(3, 1, dtype=F64), torch.zeros(3, dtype=F64), "relu"
    )
    x = torch.ones(8, 1, 1, dtype=F64)
    x[3:] = -100.0
    return gradtrace.analyse(weights, x)


def small_trace() -> TraceResult:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=F64)
    x = torch.randn(6, 2, 3, dtype=F64)
    return gradtrace.trace(lstm, x, loss_fn=lambda out: out[0].pow(2).mean(), lyapunov=2)


def monitored() -> list[Record]:
    """A header and a full step record (clipping, profiles with lag shares, a trace)."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 3, dtype=F64)
    opt = torch.optim.SGD(lstm.parameters(), 0.1)
    monitor = gradtrace.Monitor(lstm, opt, every=1, lag_every=1, lags=(1, 3), trace_every=1)
    with monitor.step(0) as s:
        out = lstm(torch.randn(30, 2, 2, dtype=F64))[0]
        s.loss(out.pow(2).sum()).backward()
        torch.nn.utils.clip_grad_norm_(lstm.parameters(), 0.1)
        opt.step()
    return [monitor.header, monitor.history[0]]


def monitor_report() -> Record:
    import tempfile

    from gradtrace.report import monitor_report as report

    folder = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 3, dtype=F64)
    monitor = gradtrace.Monitor(lstm, every=1, log=folder)
    for step in range(2):
        with monitor.step(step) as s:
            s.loss(lstm(torch.randn(8, 2, 2, dtype=F64))[0].pow(2).sum()).backward()
    monitor.close()
    return report(folder, folder / "report")


def train_run() -> Record:
    config = {"task": "adding", "model": "lstm", "length": 8, "hidden_size": 4,
              "batch_size": 4, "steps": 4, "eval_every": 2, "test_size": 8}  # fmt: skip
    return gradtrace.train(config, show_progress=False)


def reproduction() -> Record:
    from gradtrace.records import ClaimResult, Reproduction

    claim = ClaimResult("c", "a claim", "A & B 2000", "x < 1", "x = 0.5", True, ("k",))
    return Reproduction("quick", (claim,), 1.5, 3.0, "runs.sqlite", ("table.md",))


BUILDERS: dict[str, Callable[[], Record]] = {
    "train_run": train_run,
    "reproduction": reproduction,
    "monitor_report": monitor_report,
    "monitor_run": lambda: monitored()[0],
    "monitor_step": lambda: monitored()[1],
    "gradient_flow": lambda: gradtrace.curve(cell="lstm", hidden_size=4, steps=12, lyapunov=2),
    "gradient_flow-zero": dead_relu_flow,
    "gradient_flow-checkpoint": lambda: gradtrace.curve(
        activation="sigmoid", hidden_size=5, steps=9, mode="checkpoint", spectrum="eig-uniform:0:4"
    ),
    "trace": small_trace,
    "sensitivity": lambda: gradtrace.input_sensitivity(
        torch.nn.GRU(3, 2, dtype=F64), torch.randn(5, 2, 3, dtype=F64)
    ),
    "depth_profile": lambda: gradtrace.depth_profile(6, 8, "tanh"),
    "map_report": lambda: gradtrace.map_report("logistic", 3.5, bifurcation_range=(2.8, 3.6)),
    "bifurcation": lambda: bifurcation("quadratic", -1.5, 0.25, points=40, keep=8),
    "mandelbrot": lambda: gradtrace.mandelbrot(size=(24, 18), max_iter=30),
    "fixed_points": lambda: gradtrace.fixed_points(
        torch.nn.RNN(1, 2, dtype=F64), torch.zeros(1, dtype=F64), starts=16
    ),
    "rnn_portrait": lambda: gradtrace.rnn_portrait(
        small_rnn([[1.5, 0.3], [0.3, 1.5]], [0.0, 0.0]), points=21, steps=40
    ),
    "cliff_report": lambda: gradtrace.cliff_report(points=51, iterations=5),
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def record(request: pytest.FixtureRequest) -> Record:
    return BUILDERS[request.param]()


def test_every_kind_is_covered() -> None:
    built = {name.split("-")[0] for name in BUILDERS}
    assert built == set(records.KINDS)


def test_round_trip_is_exact(record: Record) -> None:
    data = record.to_dict()
    assert data["format"] == type(record).format_tag()
    assert type(record).from_dict(data) == record
    assert records.from_dict(json.loads(json.dumps(data, allow_nan=False))) == record


def test_json_is_strict_and_tagged(record: Record) -> None:
    text = records.dumps(record)
    assert not re.search(r"(?<![\"\w])(NaN|-?Infinity)(?![\"\w])", text)  # no bare tokens
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert text.startswith('{"format": "gradtrace.')


def test_save_and_load_give_the_record_back(record: Record, tmp_path: Path) -> None:
    path = gradtrace.save(record, tmp_path / "record.json")
    assert gradtrace.load(path) == record


def test_a_changed_field_breaks_equality(record: Record) -> None:
    assert dataclasses.is_dataclass(record)
    first = dataclasses.fields(record)[0]
    value = getattr(record, first.name)
    other = value + 1 if isinstance(value, int | float | torch.Tensor) else f"{value}x"
    assert dataclasses.replace(record, **{first.name: other}) != record  # type: ignore[type-var]


def test_non_finite_numbers_are_written_one_way() -> None:
    flow = dead_relu_flow()
    data = flow.to_dict()
    assert data["log10_norm"]["data"] == ["-Infinity"] * 8
    assert data["rate_per_step"] == "-Infinity" or math.isfinite(flow.rate_per_step)
    assert [encode_float(v) for v in (math.inf, -math.inf, 1.5)] == ["Infinity", "-Infinity", 1.5]
    assert encode_float(math.nan) == "NaN" and math.isnan(decode_float("NaN"))
    with pytest.raises(GradtraceError, match="must be a number or one of"):
        decode_float("nan")


def test_json_lines_cut_off_mid_line_keeps_every_complete_record(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    flows = [gradtrace.curve(hidden_size=3, steps=5, seed=s) for s in range(3)]
    for flow in flows:
        records.append(flow, log)
    text = log.read_text()
    log.write_text(text[: len(text) - 40])  # a writer killed in the middle of the third line
    assert gradtrace.load(log) == flows[:2]
    log.write_text(text.rstrip("\n"))  # the last line complete but without its newline
    assert gradtrace.load(log) == flows


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"format": "gradtrace.nothing/1"}, "unknown record kind 'nothing'"),
        ({"format": "gradtrace.trace/9"}, "written by a newer gradtrace"),
        ({"format": "other/1"}, "must be a tag such as"),
        ({"metric": "spectral"}, "a dict with a 'format' tag"),
        ([], "a dict with a 'format' tag"),
        ({"format": "gradtrace.trace/1", "metric": "spectral"}, "is missing the keys"),
        (
            {"format": "gradtrace.trace/1", "layers": [], "metric": 3, "input_shape": []},
            r"`data`\.metric must be str, got 3",
        ),
    ],
    ids=["unknown-kind", "newer-version", "foreign-tag", "no-tag", "not-a-dict", "missing", "type"],
)
def test_malformed_records_are_refused_in_one_sentence(data: object, match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        records.from_dict(data)


def test_a_record_of_one_kind_is_not_read_as_another() -> None:
    data = gradtrace.curve(hidden_size=3, steps=4).to_dict()
    with pytest.raises(GradtraceError, match=r"must be a gradtrace\.trace/1 record"):
        TraceResult.from_dict(data)


def test_load_refuses_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(GradtraceError, match=r"must be an existing \.json or \.jsonl file"):
        gradtrace.load(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(GradtraceError, match="is not valid JSON"):
        gradtrace.load(broken)


CLI_RECORDS = [
    pytest.param(["curve", "--hidden", "4", "--steps", "10"], "gradient_flow", id="curve"),
    pytest.param(["mlp", "--layers", "4", "--width", "6"], "depth_profile", id="mlp"),
    pytest.param(["map", "--param", "3.2", "--steps", "10"], "map_report", id="map"),
    pytest.param(["mandelbrot", "--size", "20x16", "--max-iter", "20"], "mandelbrot", id="mandel"),
    pytest.param(["cliff", "--points", "41", "--iterations", "4"], "cliff_report", id="cliff"),
    pytest.param(["trace", "--model", "torch.nn:GRU", "--shape", "6,2,3"], None, id="trace-bad"),
]


@pytest.mark.parametrize(("argv", "kind"), CLI_RECORDS)
def test_records_written_by_the_cli_read_back(
    argv: list[str], kind: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind is None:  # torch.nn.GRU() needs sizes: refused in one line, not a record
        with pytest.raises(SystemExit):
            run([*argv, "--json"])
        assert capsys.readouterr().err.startswith("gradtrace: error: `--model`")
        return
    run([*argv, "--json"])
    path = tmp_path / "out.json"
    path.write_text(capsys.readouterr().out)
    back = gradtrace.load(path)
    assert isinstance(back, Record) and kind == back.KIND


def test_trace_records_written_by_the_cli_read_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save(torch.nn.LSTM(3, 4, num_layers=2), tmp_path / "model.pt")
    model = str(tmp_path / "model.pt")
    for extra, kind in (([], "trace"), (["--sensitivity"], "sensitivity")):
        run(["trace", "--model", model, "--shape", "5,2,3", "--json", *extra])
        path = tmp_path / f"{kind}.json"
        path.write_text(capsys.readouterr().out)
        back = gradtrace.load(path)
        assert isinstance(back, Record) and kind == back.KIND


def test_a_figure_path_that_cannot_be_written_names_the_argument_path(tmp_path: Path) -> None:
    # gradtrace.plot(record, path) named it `plot` (the CLI's option), which it has no argument
    with pytest.raises(GradtraceError, match=r"^`path` must end in \.png, \.pdf, \.svg"):
        gradtrace.plot(dead_relu_flow(), tmp_path / "figure.txt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda p: gradtrace.load(5),
            r"^`path` must be a file path \(a str or pathlib.Path\), got int$",
        ),
        (
            lambda p: gradtrace.save(dead_relu_flow(), None),
            "`path` must be a file path .*got NoneType",
        ),
        (lambda p: gradtrace.plot(dead_relu_flow(), 3), "`path` must be a file path .*got int"),
        (lambda p: gradtrace.load(p / "bytes.json"), "must be a gradtrace record file .*not text$"),
        (lambda p: gradtrace.load(p / "plain.json"), "whose JSON is an object without a 'format'"),
        (
            lambda p: gradtrace.plot(dead_relu_flow(), p / "f.png", colour="red"),
            "^the figure of a GradientFlow takes the options title, got colour$",
        ),
    ],
    ids=["load-int", "save-none", "plot-int", "binary-file", "plain-json", "unknown-option"],
)
def test_bad_file_arguments_are_refused_in_one_sentence(
    tmp_path: Path, call: Callable[[Path], object], message: str
) -> None:
    # each was a raw TypeError or UnicodeDecodeError from inside Python or matplotlib
    (tmp_path / "bytes.json").write_bytes(bytes(range(128, 256)))
    (tmp_path / "plain.json").write_text('{"a": 1}')
    before = sorted(tmp_path.iterdir())
    with pytest.raises(GradtraceError, match=message):
        call(tmp_path)
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_a_record_draws_itself_as_gradtrace_plot_does(tmp_path: Path) -> None:
    # record.plot(path) is gradtrace.plot(record, path): the same figure function, the same
    # checks; a kind without a figure is refused by name
    flow = dead_relu_flow()
    assert flow.plot(tmp_path / "a.png", title="dead ReLU") == tmp_path / "a.png"
    gradtrace.plot(flow, tmp_path / "b.png", title="dead ReLU")
    assert (tmp_path / "a.png").stat().st_size > 1000
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(
        GradtraceError, match=r"^`record` must be one of .* to be drawn, got Theory"
    ):
        flow.theory.plot(tmp_path / "c.png")
