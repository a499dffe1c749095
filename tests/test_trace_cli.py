"""Tests for `gradtrace trace` (gradtrace.cli.trace) and the `--model` loaders it uses
(gradtrace.io.models).

`invoke` runs the command through gradtrace.cli.main.run, the `gradtrace` script itself: a
GradtraceError becomes exit status 2 and one line on stderr, the library's argument names
turned into the options the user typed. References: the library's `trace` and autograd on the
same model and input (the JSON must round-trip to equal curves). Runs that are compared bit
for bit with the library on the CPU pass `--device cpu`, since the default is now auto.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradtrace.cli.main import run
from gradtrace.errors import GradtraceError
from gradtrace.io.models import load_model
from gradtrace.records import SensitivityProfile, TraceResult
from gradtrace.tracing import trace

DTYPE = torch.float64
ERROR = "gradtrace: error: "


def invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run `gradtrace ARGS` as the script does; return (exit status, stdout or the error).

    The error is stderr without its "gradtrace: error: " prefix and its final newline.
    """
    capsys.readouterr()  # drop anything printed before
    try:
        run(args)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    else:
        code = 0
    captured = capsys.readouterr()
    if code == 0:
        return 0, captured.out
    assert captured.err.startswith(ERROR) and captured.err.endswith("\n"), captured.err
    return code, captured.err.removeprefix(ERROR).removesuffix("\n")


FACTORY = """
    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.gru = nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True,
                              dtype=torch.float64)
            self.head = nn.Linear(8, 1, dtype=torch.float64)

        def forward(self, x):
            return self.head(self.gru(x)[0])

    def build():
        return Model()

    def linear():
        return nn.Linear(3, 1)

    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(3, 4, dtype=torch.float64)

        def forward(self, x):
            out, h = self.gru(x)
            return {"out": out, "h": h}

    def named():
        return Named()

    answer = 42
"""


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "tracecli_models.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "tracecli_models:build"


def test_factory_model_with_random_input_prints_json_equal_to_the_library(
    factory: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["trace", "--model", factory, "--shape", "6,2,3", "--batch-first", "--json"]
    args += ["--device", "cpu"]
    code, out = invoke([*args, "--lyapunov", "2", "--seed", "3"], capsys)
    assert code == 0
    result = TraceResult.from_dict(json.loads(out))
    from tracecli_models import build  # type: ignore[import-not-found]

    x = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    expected = trace(build(), x.transpose(0, 1), lyapunov=2, seed=3)
    assert len(result.layers) == 4
    for got, want in zip(result.layers, expected.layers, strict=True):
        torch.testing.assert_close(got.log10_norm, want.log10_norm, atol=0, rtol=0)
        assert got.lyapunov is not None and want.lyapunov is not None
        torch.testing.assert_close(got.lyapunov.exponents, want.lyapunov.exponents)


def test_random_input_takes_the_layout_the_models_batch_first_modules_declare(
    factory: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # the factory's GRU is batch_first: `--shape T,B,I` must still mean T = 6 steps of B = 2
    args = ["trace", "--model", factory, "--shape", "6,2,3", "--json", "--device", "cpu"]
    runs = {}
    for flag in ("", "--batch-first", "--time-first"):
        code, out = invoke(args + ([flag] if flag else []), capsys)
        assert code == 0, out
        runs[flag] = TraceResult.from_dict(json.loads(out))
    assert runs[""].layers[0].log10_norm.shape == (2, 6)  # (B, T)
    for got, want in zip(runs[""].layers, runs["--batch-first"].layers, strict=True):
        torch.testing.assert_close(got.log10_norm, want.log10_norm, atol=0, rtol=0)
    assert runs["--time-first"].layers[0].log10_norm.shape == (6, 2)  # as asked: B = 6, T = 2


def test_sensitivity_mode_equals_autograd_and_draws_a_figure(
    factory: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figure = tmp_path / "sens.png"
    args = ["trace", "--model", factory, "--shape", "6,2,3", "--batch-first", "--seed", "3"]
    args += ["--device", "cpu"]
    code, out = invoke([*args, "--sensitivity", "--json", "--plot", str(figure)], capsys)
    assert code == 0
    profile = SensitivityProfile.from_dict(json.loads(out))
    from tracecli_models import build  # type: ignore[import-not-found]

    # Reference: one output unit, so ||dy_T/dx_k|| is the norm of autograd's gradient (1e-12).
    x = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    x = x.transpose(0, 1).clone().requires_grad_(True)  # (B, T, I)
    (grad,) = torch.autograd.grad(build()(x)[:, -1, 0].sum(), x)
    expected = torch.log10(grad.norm(dim=-1))  # (B, T)
    torch.testing.assert_close(profile.log10_norm, expected, atol=1e-12, rtol=0)
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_a_saved_module_whose_class_is_in_a_local_file_loads_from_that_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # torch.save pickles the class by module name: `python -c "torch.load(...)"` run from the
    # folder finds ./localcls_models.py, and so must `gradtrace trace --model model.pt`.
    (tmp_path / "localcls_models.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    import localcls_models  # type: ignore[import-not-found]

    torch.save(localcls_models.build(), tmp_path / "model.pt")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    monkeypatch.delitem(sys.modules, "localcls_models")
    monkeypatch.chdir(tmp_path)
    code, out = invoke(["trace", "--model", "model.pt", "--shape", "5,2,3", "--json"], capsys)
    assert code == 0, out
    assert len(TraceResult.from_dict(json.loads(out)).layers) == 4


def test_a_saved_module_whose_class_was_in_the_saving_script_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pickle records such a class as __main__.Local, which no later process has
    script = (
        "import torch\n"
        "class Local(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.rnn = torch.nn.GRU(3, 4)\n"
        "    def forward(self, x):\n"
        "        return self.rnn(x)[0]\n"
        f"torch.save(Local(), {str(tmp_path / 'local.pt')!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    code, out = invoke(["trace", "--model", str(tmp_path / "local.pt"), "--shape", "5,2,3"], capsys)
    assert code == 2
    assert "class was defined in the script that saved it" in out
    assert "move the class into a module beside the file" in out


def test_saved_module_with_npy_input_prints_a_summary_and_a_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The figure is a smoke check: it is written and is a PNG.
    torch.manual_seed(1)
    torch.save(nn.LSTM(3, 4, proj_size=2, dtype=DTYPE), tmp_path / "lstm.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(8, 2, 3)))
    plot = tmp_path / "trace.png"
    code, out = invoke(
        [
            "trace",
            "--model",
            str(tmp_path / "lstm.pt"),
            "--input",
            str(tmp_path / "x.npy"),
            "--plot",
            str(plot),
        ],
        capsys,
    )
    assert code == 0
    assert out.startswith("lstm layer 0 forward: ")
    assert "horizon" in out and f"figure: {plot}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torchscript_lstm_is_traced_like_its_eager_original(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(2)
    lstm = nn.LSTM(3, 4, num_layers=2, dtype=DTYPE)
    with warnings.catch_warnings():  # torch 2.13 marks torch.jit deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(lstm).save(str(tmp_path / "lstm_ts.pt"))
    x = torch.randn(5, 2, 3, dtype=DTYPE)
    torch.save(x, tmp_path / "x.pt")
    args = ["trace", "--model", str(tmp_path / "lstm_ts.pt"), "--input", str(tmp_path / "x.pt")]
    code, out = invoke([*args, "--json", "--device", "cpu"], capsys)
    assert code == 0
    result = TraceResult.from_dict(json.loads(out))
    for got, want in zip(result.layers, trace(lstm, x).layers, strict=True):
        torch.testing.assert_close(got.log10_norm, want.log10_norm, atol=0, rtol=0)


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = invoke(["trace", "--help"], capsys)
    assert code == 0
    assert "Example: gradtrace trace --model" in out
    assert "weights_only=False" in out


def _nan_file(tmp_path: Path) -> str:
    x = np.zeros((4, 1, 3))
    x[1, 0, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    return str(tmp_path / "nan.npy")


REFUSALS: dict[str, tuple[list[str], str | tuple[str, ...]]] = {
    "factory-does-not-import": (
        ["--model", "no_such_pkg.models:build", "--shape", "4,1,3"],
        "`--model` module 'no_such_pkg.models' could not be imported",
    ),
    "factory-not-defined": (
        ["--model", "tracecli_models:missing", "--shape", "4,1,3"],
        "`--model` names 'missing', which 'tracecli_models' does not define",
    ),
    "factory-raises": (
        ["--model", "torch.nn:Linear", "--shape", "4,1,3"],
        "`--model` 'torch.nn:Linear' raised TypeError",
    ),
    "factory-exits": (
        ["--model", "builtins:exit", "--shape", "5,2,3"],
        "`--model` 'builtins:exit' raised SystemExit",
    ),
    "factory-calls-sys-exit": (
        ["--model", "sys:exit", "--shape", "5,2,3"],
        "`--model` 'sys:exit' raised SystemExit",
    ),
    "bad-plot-suffix": (
        ["--model", "tracecli_models:build", "--shape", "4,1,3", "--plot", "out.jpg"],
        "`--plot` must end in .png, .pdf, .svg",
    ),
    "missing-file": (
        ["--model", "nowhere.pt", "--shape", "4,1,3"],
        "`--model` must be an existing file or package.module:factory",
    ),
    "no-recurrent-module": (
        ["--model", "tracecli_models:linear", "--shape", "4,1,3"],
        ("holds no nn.RNN, nn.LSTM, nn.GRU or recurrent cell", "`--sensitivity`"),
    ),
    "feature-size-mismatch": (
        ["--model", "tracecli_models:build", "--shape", "4,1,5", "--batch-first"],
        "must have input_size = 3 features, got 5",
    ),
    "bad-shape": (["--model", "tracecli_models:build", "--shape", "4,1"], "three positive"),
    "named-loss-of-a-dict": (
        ["--model", "tracecli_models:named", "--shape", "4,1,3", "--loss", "sum"],
        "`--loss` 'sum' measures the output's first tensor, but the model returned a dict with "
        "keys 'out', 'h'; give a loss function of the whole output instead (on the command "
        "line, `--loss package.module:function`)",
    ),
    "both-inputs": (
        ["--model", "tracecli_models:build", "--shape", "4,1,3", "--input", "x.npy"],
        "give `--input FILE` (once per argument) or `--shape T,B,I`, got both",
    ),
    "bad-lyapunov": (
        ["--model", "tracecli_models:build", "--shape", "4,1,3", "--lyapunov", "two"],
        "`--lyapunov` must be a positive integer or 'full'",
    ),
    "non-finite-input": (["--model", "tracecli_models:build", "--input", "NAN"], "finite"),
    # Regressions: these files used to end in a traceback (UnpicklingError, ValueError, ...).
    "model-file-not-a-pickle": (
        ["--model", "GARBAGE.pt", "--shape", "4,1,3"],
        ("`--model` file", "could not be"),
    ),
    "input-npy-not-numpy": (["--model", "tracecli_models:build", "--input", "GARBAGE.npy"], "read"),
    "input-npy-empty": (["--model", "tracecli_models:build", "--input", "EMPTY.npy"], "read"),
    "input-pt-not-a-tensor-file": (
        ["--model", "tracecli_models:build", "--input", "GARBAGE.pt"],
        "could not be read",
    ),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_bad_input_exits_2_with_one_sentence(
    name: str, factory: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, message = REFUSALS[name]
    (tmp_path / "garbage").write_text("not a model, not an array")
    (tmp_path / "empty").write_bytes(b"")
    files = {
        "NAN": _nan_file(tmp_path),
        "GARBAGE.pt": str((tmp_path / "garbage").rename(tmp_path / "garbage.pt")),
        "GARBAGE.npy": str(tmp_path / "garbage.npy"),
        "EMPTY.npy": str((tmp_path / "empty").rename(tmp_path / "empty.npy")),
    }
    (tmp_path / "garbage.npy").write_text("not an array")
    args = [files.get(a, a) for a in args]
    code, error = invoke(["trace", *args], capsys)
    assert code == 2
    for part in (message,) if isinstance(message, str) else message:
        assert part in error
    assert "\n" not in error


@pytest.mark.parametrize("spec", ["builtins:exit", "sys:exit"])
def test_a_factory_that_exits_is_a_gradtrace_error_naming_the_argument(spec: str) -> None:
    # SystemExit is no Exception: a factory calling exit() must not end the process.
    with pytest.raises(GradtraceError, match=f"`model` '{spec}' raised SystemExit") as err:
        load_model(spec)
    assert "\n" not in str(err.value)


def test_a_name_that_is_not_callable_is_refused_as_not_callable(
    factory: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 'tracecli_models' does define `answer`, as 42: the message must say it is not callable.
    code, error = invoke(["trace", "--model", "tracecli_models:answer", "--shape", "4,1,3"], capsys)
    assert code == 2
    assert "`--model` names 'answer'" in error
    assert "callable" in error
    assert "\n" not in error


INPUT_FILES = {
    "missing": ("nowhere.npy", "`--input` file"),
    "bad-suffix": ("x.txt", "`--input` must be a .npy or .pt file"),
    "unreadable": ("GARBAGE.npy", "`--input` file"),
}


@pytest.mark.parametrize("name", INPUT_FILES)
def test_input_file_errors_name_the_input_option(
    name: str, factory: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The library's load_tensor names its argument; the command must name `--input`.
    path, message = INPUT_FILES[name]
    (tmp_path / "GARBAGE.npy").write_text("not an array")
    args = ["trace", "--model", factory, "--input", str(tmp_path / path)]
    code, error = invoke(args, capsys)
    assert code == 2
    assert message in error
    assert "`input`" not in error
