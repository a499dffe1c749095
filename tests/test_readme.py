"""The README's examples run as written: every ```python block and every `gradtrace` command.

The files the commands name (my_rnn.npz, mypkg/models.py, model.pt, x.npy, hidden.pt, wlm.py,
tokens.pt, next_tokens.pt, a monitored run in runs/exp1) are created first
in a scratch folder, so each command runs for real; `gradtrace tour` and its alias `gradtrace demo`
are left to test_tour.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gradtrace
from gradtrace.cli.main import run
from gradtrace.core.theory import VERDICTS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
# long, or a server that runs until stopped: test_tour, test_reproduce, test_explorer run them
SKIPPED = ("gradtrace tour", "gradtrace demo", "gradtrace reproduce", "gradtrace explore")


def _commands() -> list[str]:
    lines: list[str] = []
    for lang, code in BLOCKS:
        if lang:
            continue
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("gradtrace ") and not line.startswith(SKIPPED):
                lines.append(line)
    return lines


COMMANDS = _commands()


def _write_inputs(folder: Path) -> None:
    rng = np.random.default_rng(0)
    H, I, T = 6, 3, 15
    np.savez(
        folder / "my_rnn.npz",
        W_hh=rng.normal(size=(H, H)) / H**0.5,
        W_hx=rng.normal(size=(H, I)),
        b=rng.normal(size=H),
        x=rng.normal(size=(T, I)),
        h=rng.normal(size=(T, H)),
    )
    (folder / "mypkg").mkdir()
    (folder / "mypkg" / "__init__.py").write_text("")
    (folder / "mypkg" / "models.py").write_text(
        "import torch\n\n\ndef build():\n    return torch.nn.GRU(32, 16, num_layers=2)\n"
    )
    torch.save(torch.nn.LSTM(4, 8), folder / "model.pt")
    np.save(folder / "x.npy", rng.normal(size=(20, 2, 4)).astype(np.float32))
    torch.save((torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)), folder / "hidden.pt")
    (folder / "wlm.py").write_text(WORD_MODEL)
    gen = torch.Generator().manual_seed(0)
    torch.save(torch.randint(0, 50, (12, 3), generator=gen), folder / "tokens.pt")
    torch.save(torch.randint(0, 50, (12, 3), generator=gen), folder / "next_tokens.pt")
    lstm = torch.nn.LSTM(2, 3)  # a small monitored run for `gradtrace monitor runs/exp1`
    monitor = gradtrace.Monitor(lstm, every=1, log=folder / "runs" / "exp1")
    for step in range(3):
        with monitor.step(step) as s:
            s.loss(lstm(torch.randn(10, 2, 2, generator=gen))[0].pow(2).sum()).backward()
    monitor.close()


WORD_MODEL = """
import torch
import torch.nn.functional as F


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Embedding(50, 8)
        self.rnn = torch.nn.LSTM(8, 8, num_layers=2, dropout=0.5)
        self.decoder = torch.nn.Linear(8, 50)

    def forward(self, input, hidden):
        output, hidden = self.rnn(self.encoder(input), hidden)
        return F.log_softmax(self.decoder(output), dim=-1), hidden

    def init_hidden(self, bsz):
        return (torch.zeros(2, bsz, 8), torch.zeros(2, bsz, 8))


def build():
    return Model()
"""


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("mypkg.models", None)
    sys.modules.pop("mypkg", None)
    sys.modules.pop("wlm", None)


def test_the_readme_has_examples_to_run() -> None:
    assert len(PYTHON) >= 2
    assert len(COMMANDS) >= 8


def test_the_readme_defines_every_summary_it_uses() -> None:
    for term in ("**rate**", "**verdict**", "**memory horizon**", "**top Lyapunov exponent**"):
        assert term in README
    for verdict in VERDICTS:
        assert f"*{verdict}*" in README


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_block_runs(code: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    # Every name a block promises to produce is there and real.
    if "flow" in namespace:
        assert namespace["flow"].verdict in VERDICTS
        assert gradtrace.load(scratch / "flow.json") == namespace["flow"]
    if "result" in namespace:  # the word model's 2 layers, traced in train mode
        result = namespace["result"]
        assert len(result.layers) == 2 and (result.mode, result.dropout_seed) == ("train", 0)
        assert [layer.dropout for layer in result.layers] == [0.0, 0.5]
    if "report" in namespace:  # the monitored loop: 20 steps, every 5th recorded
        assert (namespace["report"].steps, namespace["report"].last) == (4, 15)
        assert "recurrent share" in namespace["report"].verdicts[0]
    if "own" in namespace:
        assert (namespace["own"].hidden_size, namespace["own"].state_size) == (16, 32)
    if "profile" in namespace:
        assert namespace["profile"].log10_norm.shape == (4, 50)
    if "depth" in namespace:
        assert namespace["depth"].verdict == "vanishing"  # 30 sigmoid layers
    if "logistic" in namespace:
        assert namespace["logistic"].attractor.period == 4  # r = 3.5 settles on a 4-cycle


@pytest.mark.parametrize("command", COMMANDS)
def test_command_runs(command: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    words = shlex.split(command)[1:]
    redirect = words.index(">") if ">" in words else None
    if redirect is not None:
        words = words[:redirect]
    try:
        run(words)
    except SystemExit as done:  # run() exits only on an error
        pytest.fail(f"{command!r} exited with {done.code}: {capsys.readouterr().err}")
    out = capsys.readouterr().out
    assert out.strip()
    for plot in (w for w in words if w.endswith(".png")):
        assert (scratch / plot).stat().st_size > 1000
