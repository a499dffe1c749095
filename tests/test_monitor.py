"""Tests for gradtrace.monitor: the Monitor in a real training loop, against references.

References: p.grad.norm() and the weights before and after optimizer.step(), computed directly
(1e-12 relative); the unchunked fused module (same outputs and parameter gradients, 1e-12 in
float64, 1e-6 in float32); autograd through the recurrence unrolled with nn.LSTMCell /
nn.GRUCell on the module's own weights, with zero perturbations added to h_b where it is passed
on (the recurrent part), where it is output (the direct part) or both (the total), 1e-10
relative; for the lag shares, autograd of sum_{t >= b + d} <dL/dh_t|direct, h_t> by h_b through
the same unrolled cells (1e-10). Float64 unless a test says otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gradtrace
from gradtrace.monitor import Monitor, NonFiniteError, every, log_spaced, never, when
from gradtrace.monitor.chunked import chunked
from gradtrace.monitor.clipping import AFTER_STEP, BEFORE_BACKWARD, INFINITE
from gradtrace.records import MonitorRun, MonitorStep

DTYPE = torch.float64
T, B, I, H = 10, 3, 2, 4
K = 4  # boundaries 4, 8, 10


class Seq(nn.Module):
    """A recurrent module, then a head applied at every step: loss over every output."""

    def __init__(self, rnn: nn.RNNBase, out: int = 2) -> None:
        super().__init__()
        self.rnn = rnn
        width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
        self.head = nn.Linear(width, out, dtype=rnn.weight_hh_l0.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[0])


def data(seed: int = 0, dtype: torch.dtype = DTYPE) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(T, B, I, generator=gen, dtype=dtype),
        torch.randn(T, B, 2, generator=gen, dtype=dtype),
    )


def loss_of(out: Tensor, y: Tensor) -> Tensor:
    weights = torch.linspace(0.5, 1.5, out.shape[0], dtype=out.dtype).view(-1, 1, 1)
    return (weights * (out - y).pow(2)).sum()


def train(
    model: nn.Module, monitor: Monitor, steps: int, clip: float | None = 1.0, lr: float = 0.05
) -> list[MonitorStep]:
    opt = monitor.optimizer or torch.optim.SGD(model.parameters(), lr)
    dtype = next(model.parameters()).dtype
    for step in range(steps):
        x, y = data(step, dtype)
        with monitor.step(step) as s:
            loss = s.loss(loss_of(model(x), y))
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            opt.zero_grad()
    return monitor.history


# ---------------------------------------------------------------- norms


def test_recorded_norms_equal_the_gradients_and_updates_computed_directly() -> None:
    torch.manual_seed(0)
    model = Seq(nn.LSTM(I, H, num_layers=2, dtype=DTYPE))
    opt = torch.optim.Adam(model.parameters(), 0.01)
    monitor = Monitor(model, opt, every=1, chunk=K)
    x, y = data(1)
    with monitor.step(0) as s:
        loss = s.loss(loss_of(model(x), y))
        loss.backward()
        grads = {n: p.grad.norm().item() for n, p in model.named_parameters()}
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        total = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        after_clip = math.sqrt(sum(p.grad.norm().item() ** 2 for p in model.parameters()))
        opt.step()
        opt.zero_grad()
    (record,) = monitor.history
    assert record.loss == pytest.approx(loss.item(), rel=1e-12)
    assert record.grad_norm == pytest.approx(float(total), rel=1e-12)
    assert record.grad_norm == pytest.approx(math.sqrt(sum(g * g for g in grads.values())))
    for stats in record.parameters:
        p = dict(model.named_parameters())[stats.name]
        assert stats.grad_norm == pytest.approx(grads[stats.name], rel=1e-12)  # before clipping
        assert stats.weight_norm == pytest.approx(before[stats.name].norm().item(), rel=1e-12)
        ratio = (p.detach() - before[stats.name]).norm().item() / before[stats.name].norm().item()
        assert stats.update_ratio == pytest.approx(ratio, rel=1e-9)
    assert record.clip is not None and record.clip.acted
    assert record.clip.norm_after == pytest.approx(after_clip, rel=1e-9)
    assert record.clip.warnings == ()


# ---------------------------------------------------------------- the chunked forward

CHUNK_CASES = [
    ("lstm-2layer", lambda dt: nn.LSTM(I, H, num_layers=2, dtype=dt)),
    ("lstm-proj-bidir", lambda dt: nn.LSTM(I, H, proj_size=2, bidirectional=True, dtype=dt)),
    ("gru-batch-first", lambda dt: nn.GRU(I, H, num_layers=2, batch_first=True, dtype=dt)),
    ("rnn-relu-bidir", lambda dt: nn.RNN(I, H, nonlinearity="relu", bidirectional=True, dtype=dt)),
]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize(("name", "make"), CHUNK_CASES, ids=[c[0] for c in CHUNK_CASES])
def test_the_chunked_forward_gives_the_fused_outputs_and_gradients(
    name: str, make: Any, dtype: torch.dtype, tol: float
) -> None:
    torch.manual_seed(3)
    rnn = make(dtype)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1), dtype=dtype)
    if rnn.batch_first:
        x = x.transpose(0, 1)
    h0 = torch.randn(
        rnn.num_layers * (2 if rnn.bidirectional else 1), B,
        rnn.proj_size or rnn.hidden_size, generator=torch.Generator().manual_seed(2), dtype=dtype,
    )  # fmt: skip
    hx = (h0, torch.zeros(h0.shape[0], B, H, dtype=dtype)) if isinstance(rnn, nn.LSTM) else h0

    def run() -> tuple[Tensor, Any, list[Tensor]]:
        out, hn = rnn(x, hx)
        last = hn[0] if isinstance(hn, tuple) else hn
        (out.pow(2).sum() + last.sin().sum()).backward()
        grads = [p.grad.clone() for p in rnn.parameters()]
        rnn.zero_grad()
        return out, hn, grads

    ref_out, ref_hn, ref_grads = run()
    with chunked([("rnn", rnn)], chunk=3) as record:
        out, hn, grads = run()
    assert record and all(r.boundaries == [3, 6, 9, 10] for r in record)
    assert "forward" not in rnn.__dict__  # put back
    torch.testing.assert_close(out, ref_out, atol=tol, rtol=tol)
    for a, b in zip(
        hn if isinstance(hn, tuple) else (hn,),
        ref_hn if isinstance(ref_hn, tuple) else (ref_hn,),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)


# ---------------------------------------------------------------- through time, against cells


def cells_of(rnn: nn.RNNBase) -> list[nn.Module]:
    """One nn.LSTMCell / nn.GRUCell per layer, holding the module's own parameters."""
    kind = nn.LSTMCell if isinstance(rnn, nn.LSTM) else nn.GRUCell
    cells = []
    for layer in range(rnn.num_layers):
        size = rnn.input_size if layer == 0 else rnn.hidden_size
        cell = kind(size, rnn.hidden_size, dtype=DTYPE)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, name, getattr(rnn, f"{name}_l{layer}"))
        cells.append(cell)
    return cells


def unrolled_parts(model: Seq, x: Tensor, y: Tensor, boundaries: list[int]) -> dict[str, Any]:
    """Norms of the recurrent, direct and total parts of dL/dh_b per layer and boundary,
    the part of dL/dc_b passed on, dL/dh_0, and the direct gradients of every step, by
    perturbation."""
    lstm = isinstance(model.rnn, nn.LSTM)
    cells = cells_of(model.rnn)
    L = len(cells)

    def zero() -> Tensor:
        return torch.zeros(B, H, dtype=DTYPE, requires_grad=True)

    rec = [{b: zero() for b in boundaries} for _ in range(L)]
    dirs = [{t: zero() for t in range(1, T + 1)} for _ in range(L)]
    cst = [{b: zero() for b in boundaries} for _ in range(L)]
    h0 = [zero() for _ in range(L)]
    inputs = list(x.unbind(0))
    for layer, cell in enumerate(cells):
        h, c = h0[layer], torch.zeros(B, H, dtype=DTYPE)
        outs = []
        for t in range(T):
            if lstm:
                h, c = cell(inputs[t], (h, c))
            else:
                h = cell(inputs[t], h)
            step = t + 1
            outs.append(h + dirs[layer][step])  # the output at this step
            if step in rec[layer]:
                h = h + rec[layer][step]  # the state passed on
                if lstm:
                    c = c + cst[layer][step]
        inputs = outs
    loss = loss_of(model.head(torch.stack(inputs)), y)
    flat = [v for part in (rec, dirs, cst) for d in part for v in d.values()] + h0
    found = torch.autograd.grad(loss, flat, allow_unused=True, materialize_grads=True)
    grads = dict(zip(map(id, flat), found, strict=True))
    out: dict[str, Any] = {"loss": loss.item()}
    for layer in range(L):
        g = lambda t: grads[id(t)]  # noqa: E731
        out[layer] = {
            "recurrent": [g(rec[layer][b]).norm().item() for b in boundaries],
            "direct": [g(dirs[layer][b]).norm().item() for b in boundaries],
            "total": [(g(rec[layer][b]) + g(dirs[layer][b])).norm().item() for b in boundaries],
            "cell": [g(cst[layer][b]).norm().item() for b in boundaries],
            "initial": g(h0[layer]).norm().item(),
            "direct_all": {t: g(dirs[layer][t]) for t in range(1, T + 1)},
        }
    return out


def assert_parts(prof: Any, want: dict[str, Any], lstm: bool) -> None:
    """A profile's parts against `unrolled_parts` of its layer, 1e-10 relative."""
    for part in ("recurrent", "direct", "total"):
        got = getattr(prof, part).tolist()
        assert got == pytest.approx(want[part], rel=1e-10, abs=1e-300), part
    assert prof.initial == pytest.approx(want["initial"], rel=1e-10)
    if lstm:
        assert prof.cell_state is not None
        assert prof.cell_state.tolist() == pytest.approx(want["cell"], rel=1e-10, abs=1e-300)
    assert float(prof.recurrent[-1]) == 0.0  # nothing reads h_T after the last step


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_and_direct_parts_equal_the_unrolled_cells(kind: str) -> None:
    torch.manual_seed(4)
    rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(I, H, num_layers=2, dtype=DTYPE)
    model = Seq(rnn)
    x, y = data(5)
    monitor = Monitor(model, every=1, chunk=K)
    with monitor.step(0):
        loss_of(model(x), y).backward()
    (record,) = monitor.history
    reference = unrolled_parts(model, x, y, [4, 8, 10])
    assert [p.label for p in record.profiles] == ["rnn layer 0 forward", "rnn layer 1 forward"]
    for prof in record.profiles:
        assert prof.boundaries == (4, 8, 10)
        assert_parts(prof, reference[prof.layer], kind == "lstm")


class CellLoop(nn.Module):
    """Cells stacked in one Python loop over the steps, as pytorch/examples'
    time_sequence_prediction writes its two nn.LSTMCell: layer 0 starts from explicit zeros,
    layer 1 from no state at all (the cell's own zeros)."""

    def __init__(self, rnn: nn.RNNBase, head: nn.Linear) -> None:
        super().__init__()
        self.cells = nn.ModuleList(cells_of(rnn))
        self.head = head
        self.lstm = isinstance(rnn, nn.LSTM)

    def forward(self, x: Tensor) -> Tensor:
        zeros = torch.zeros(x.shape[1], H, dtype=x.dtype)
        states: list[Any] = [(zeros, zeros) if self.lstm else zeros, None]
        outputs = []
        for x_t in x.unbind(0):
            for i, cell in enumerate(self.cells):
                states[i] = cell(x_t, states[i])
                x_t = states[i][0] if self.lstm else states[i]
            outputs.append(self.head(x_t))
        return torch.stack(outputs)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_loop_over_cells_gets_the_parts_of_the_unrolled_reference(kind: str) -> None:
    torch.manual_seed(4)
    rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(I, H, num_layers=2, dtype=DTYPE)
    seq = Seq(rnn)  # the reference's head is the loop's
    model = CellLoop(rnn, seq.head)
    x, y = data(5)
    loss_of(model(x), y).backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    monitor = Monitor(model, every=1, chunk=K)
    with monitor.step(0):
        out = model(x)
        loss_of(out, y).backward()
    # the loop ran as written: the same outputs and parameter gradients, to the last bit
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), plain, strict=True))
    assert all("forward" not in cell.__dict__ for cell in model.cells)  # the patch is gone
    (record,) = monitor.history
    reference = unrolled_parts(seq, x, y, [4, 8, 10])
    labels = [p.label for p in record.profiles]
    assert labels == ["cells.0 layer 0 forward", "cells.1 layer 0 forward"]
    for layer, prof in enumerate(record.profiles):
        assert prof.steps == T and prof.boundaries == (4, 8, 10)
        assert_parts(prof, reference[layer], kind == "lstm")


def test_lag_shares_asked_of_a_cell_loop_are_refused_in_a_warning_that_names_it() -> None:
    torch.manual_seed(4)
    rnn = nn.GRU(I, H, num_layers=2, dtype=DTYPE)
    model = CellLoop(rnn, Seq(rnn).head)
    with pytest.warns(UserWarning, match=r"loops over `cells.0`, `cells.1` get the through-time"):
        monitor = Monitor(model, every=1, chunk=K, lag_every=1)
    x, y = data(5)
    with monitor.step(0):
        loss_of(model(x), y).backward()
    assert all(
        p.lag_shares is None and p.recurrent.shape == (3,) for p in monitor.history[0].profiles
    )


def test_a_cell_called_once_per_forward_has_no_profile_through_time() -> None:
    cell = nn.GRUCell(I, H, dtype=DTYPE)
    monitor = Monitor(cell, every=1, chunk=K)
    x = data(1)[0][0]
    with monitor.step(0):
        cell(x).sum().backward()
    assert monitor.history[0].profiles == ()


def test_lag_shares_equal_an_explicit_per_lag_reference() -> None:
    torch.manual_seed(6)
    model = Seq(nn.LSTM(I, H, dtype=DTYPE))
    x, y = data(7)
    lags = (1, 2, 5)
    monitor = Monitor(model, every=1, chunk=K, lag_every=1, lags=lags)
    with monitor.step(0):
        loss_of(model(x), y).backward()
    (prof,) = monitor.history[0].profiles
    assert prof.lags == lags and prof.lag_shares is not None
    reference = unrolled_parts(model, x, y, [4, 8, 10])
    direct = reference[0]["direct_all"]  # dL/dh_t|direct, t = 1..T
    cell = cells_of(model.rnn)[0]
    for j, b in enumerate(prof.boundaries):
        # h_b and c_b of the reference trajectory, then the surrogate of the far outputs.
        with torch.no_grad():
            h, c = torch.zeros(B, H, dtype=DTYPE), torch.zeros(B, H, dtype=DTYPE)
            for t in range(b):
                h, c = cell(x[t], (h, c))
        whole = reference[0]["total"][j]
        for i, d in enumerate(lags):
            if b + d > T:
                assert math.isnan(float(prof.lag_shares[i, j]))
                continue
            hb = h.clone().requires_grad_(True)
            state, surrogate = (hb, c), torch.zeros((), dtype=DTYPE)
            for t in range(b, T):
                state = cell(x[t], state)
                if t + 1 >= b + d:
                    surrogate = surrogate + (direct[t + 1] * state[0]).sum()
            (grad,) = torch.autograd.grad(surrogate, hb)
            assert float(prof.lag_shares[i, j]) == pytest.approx(
                grad.norm().item() / whole, rel=1e-10
            )


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (every(3), [0, 3, 6, 9, 12, 15, 18]),
        (every(5, start=2), [2, 7, 12, 17]),
        (log_spaced(4), [0, 1, 2, 3, 5, 10, 17]),
        (when(lambda s: s in (4, 11)), [4, 11]),
        (never(), []),
    ],
)
def test_schedules_fire_on_exactly_the_steps_they_promise(
    schedule: Any, expected: list[int]
) -> None:
    assert [s for s in range(20) if schedule(s)] == expected
    torch.manual_seed(0)
    model = Seq(nn.GRU(I, H, dtype=DTYPE))
    monitor = Monitor(model, every=schedule, chunk=K)
    train(model, monitor, 20, clip=None)
    assert [r.step for r in monitor.history] == expected


# ---------------------------------------------------------------- NaN / Inf


class Amplifier(nn.Module):
    """A ReLU RNN that blows up from step `start` on, when `armed`: h_t grows by 1e30 a step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.rnn = nn.RNN(I, H, nonlinearity="relu", dtype=torch.float32)
        self.head = nn.Linear(H, 2, dtype=torch.float32)
        self.armed = False

    def forward(self, x: Tensor) -> Tensor:
        if self.armed:
            with torch.no_grad():
                self.rnn.weight_hh_l0.copy_(torch.eye(H) * 1e30)
                self.rnn.bias_hh_l0.fill_(1.0)
        return self.head(self.rnn(x)[0])


def test_a_run_that_overflows_is_reported_where_it_began(tmp_path: Path) -> None:
    model = Amplifier()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    monitor = Monitor(model, opt, every=2, log=tmp_path, chunk=K)
    for step in range(8):
        x, y = data(step, torch.float32)
        model.armed = step == 5
        with monitor.step(step) as s:
            loss = s.loss(loss_of(model(x), y))
            loss.backward()
            opt.step()
            opt.zero_grad()
    records = gradtrace.load(tmp_path / "monitor.jsonl")
    assert isinstance(records, list) and isinstance(records[0], MonitorRun)
    steps = [r for r in records if isinstance(r, MonitorStep)]
    bad = next(r for r in steps if r.nonfinite is not None)
    assert bad.step == 5  # not a scheduled step, recorded because it went non-finite
    origin = bad.nonfinite
    assert (origin.stage, origin.module, origin.module_type) == ("forward", "rnn", "RNN")
    assert (origin.layer, origin.direction) == (0, "forward")
    # h_1 = relu(W_ih x_1 + 1) is finite and about 1; h_2 ~ 1e30; h_3 ~ 1e60 overflows float32
    assert origin.time_index == 2
    assert "`rnn` (RNN), layer 0 forward at time step 2" in origin.note
    before = [r for r in steps if r.step < 5]
    assert before == [r for r in monitor.history if r.step < 5]  # read back unchanged


def test_weights_an_update_made_nan_are_recorded_with_lag_shares_on(tmp_path: Path) -> None:
    # on_nonfinite="continue" (the default) with lag shares on: a step after an update that
    # wrote NaN into the LSTM's weights is recorded with its origin and a warning that the
    # lag shares were not measured; the loop goes on (it raised out of `monitor.step`).
    torch.manual_seed(6)
    model = Seq(nn.LSTM(I, H, dtype=DTYPE))
    monitor = Monitor(model, every=1, chunk=K, lag_every=1, log=tmp_path)
    x, y = data(7)
    for step in range(3):
        with monitor.step(step) as s:
            s.loss(loss_of(model(x), y)).backward()
        if step == 0:
            with torch.no_grad():
                model.rnn.weight_hh_l0[0, 0] = math.nan
    first, *after = monitor.history
    assert first.nonfinite is None and first.profiles[0].lag_shares is not None
    for record in after:
        assert record.nonfinite is not None and "weight_hh_l0" in record.nonfinite.note
        assert any(
            w.startswith("the lag shares of `rnn` layer 0 forward were not")
            for w in record.warnings
        )
        assert record.profiles[0].lag_shares is None
    assert [r.step for r in gradtrace.load(tmp_path / "monitor.jsonl")[1:]] == [0, 1, 2]
    # the report names the steps of each warning, and judges shares on the finite steps only
    from gradtrace.report import monitor_report

    verdicts = monitor_report(tmp_path, tmp_path / "report").verdicts
    assert any(v.startswith("Warning (steps 1, 2): the lag shares of `rnn`") for v in verdicts)
    assert not any("From step 1 the recurrent share" in v for v in verdicts)
    assert any(v.startswith("Step 1 went non-finite") for v in verdicts)


def test_on_nonfinite_stop_raises_after_writing_the_record(tmp_path: Path) -> None:
    model = Amplifier()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    monitor = Monitor(model, opt, every=100, log=tmp_path, on_nonfinite="stop")
    model.armed = True
    x, y = data(0, torch.float32)
    with (
        pytest.raises(NonFiniteError, match="step 0: the loss was not finite"),
        monitor.step(0) as s,
    ):
        s.loss(loss_of(model(x), y)).backward()
        opt.step()
    records = gradtrace.load(tmp_path / "monitor.jsonl")
    assert isinstance(records, list) and records[-1].nonfinite is not None


def test_on_nonfinite_stop_raises_before_the_update_and_names_a_bad_batch() -> None:
    # The optimizer's update would write NaN into the weights: "stop" raises before it. The
    # batch itself holds an Inf, and the origin says so (no module made it).
    torch.manual_seed(2)
    model = Seq(nn.GRU(I, H, dtype=torch.float32))
    opt = torch.optim.SGD(model.parameters(), 0.01)
    monitor = Monitor(model, opt, every=100, on_nonfinite="stop")
    x, y = data(0, torch.float32)
    x[3, 0, 1] = math.inf
    before = [p.detach().clone() for p in model.parameters()]
    bad_batch = r"holds NaN/Inf \(input 0 at index \(3, 0, 1\)\)"
    with pytest.raises(NonFiniteError, match=bad_batch), monitor.step(0) as s:
        s.loss(loss_of(model(x), y)).backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    origin = monitor.history[-1].nonfinite
    assert origin is not None and origin.stage == "input"


def test_a_backward_that_goes_non_finite_in_the_loss_is_located_on_a_scheduled_step() -> None:
    # d sqrt(u) / du = inf at u = 0: the forward is finite, the loss's own backward is not.
    # On a scheduled step the replay runs through the monitored (chunked) forward's modules.
    torch.manual_seed(3)
    model = Seq(nn.GRU(I, H, dtype=torch.float32))
    opt = torch.optim.SGD(model.parameters(), 0.01)
    monitor = Monitor(model, opt, every=1, chunk=K)
    x, y = data(0, torch.float32)

    def loss_fn() -> Tensor:
        out = model(x)
        return loss_of(out, y) + (out - out.detach()).abs().sqrt().sum()

    with monitor.step(0, replay=loss_fn) as s:
        s.loss(loss_fn()).backward()
        opt.step()
    origin = monitor.history[-1].nonfinite
    assert origin is not None and (origin.stage, origin.module) == ("backward", "")
    assert "the loss's own backward made it" in origin.note
    assert monitor.history[-1].profiles  # the step's own record is still there


def test_a_sequence_shorter_than_the_default_chunk_still_has_a_boundary() -> None:
    torch.manual_seed(4)
    model = Seq(nn.LSTM(I, H, dtype=torch.float32))
    monitor = Monitor(model, None, every=1)
    x, y = data(0, torch.float32)  # T steps, fewer than the default K's lower end of 25
    with monitor.step(0) as s:
        s.loss(loss_of(model(x), y)).backward()
    (profile,) = monitor.history[-1].profiles
    assert len(profile.boundaries) == 2 and profile.boundaries[-1] == x.shape[0]
    assert math.isfinite(profile.mean_recurrent_share)


@pytest.mark.parametrize("kind", [nn.GRU, nn.LSTM])
def test_a_packed_batch_of_different_lengths_is_profiled_length_by_length(
    kind: type[nn.RNNBase],
) -> None:
    # Lengths 10, 8, 5 with K = 4: each length runs over its own steps, and the profile at a
    # boundary is the norm over the sequences still running there (b = 4: all three; b = 8:
    # the longest; the last, T, each sequence's own last step). Reference: the padded path
    # (checked against the unrolled network above) run on each sequence alone, its own
    # length, and the norms put together (1e-12); the loss and every parameter gradient
    # equal the module's own packed forward (1e-12), and the output is its packed layout.
    torch.manual_seed(5)
    rnn = kind(I, H, bidirectional=True, dtype=DTYPE)
    x, _ = data(0)
    lengths = [10, 8, 5]
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)

    def loss_of_output(out: Any) -> Tensor:
        h_n = out[1][0] if isinstance(out[1], tuple) else out[1]
        y = out[0].data if isinstance(out[0], nn.utils.rnn.PackedSequence) else out[0]
        return 0.5 * y.pow(2).sum() + h_n.pow(2).sum()

    own = loss_of_output(rnn(packed))
    want = torch.autograd.grad(own, list(rnn.parameters()))
    monitor = Monitor(rnn, None, every=1, chunk=K)
    with monitor.step(0) as s:
        out = rnn(packed)
        assert torch.equal(out[0].batch_sizes, packed.batch_sizes)
        loss = s.loss(loss_of_output(out))
        loss.backward()
    got = [p.grad for p in rnn.parameters()]
    assert float(loss.detach()) == pytest.approx(float(own.detach()), rel=1e-12)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)
    rnn.zero_grad()
    alone = []
    for b, n in enumerate(lengths):
        single = Monitor(rnn, None, every=1, chunk=K)
        with single.step(0) as s:
            s.loss(loss_of_output(rnn(x[:n, b : b + 1]))).backward()
        alone.append({p.direction: p for p in single.history[0].profiles})
    rnn.zero_grad()
    for prof in monitor.history[0].profiles:
        assert prof.steps == T and prof.boundaries == (4, 8, 10)
        for name in ("recurrent", "direct", "total") + (("cell_state",) if kind is nn.LSTM else ()):
            expected = []
            for boundary in prof.boundaries:
                parts = []
                for b, n in enumerate(lengths):
                    mine = alone[b][prof.direction]
                    at = n if boundary == T else boundary
                    if at in mine.boundaries and (boundary == T or boundary < n):
                        parts.append(float(getattr(mine, name)[mine.boundaries.index(at)]))
                expected.append(math.sqrt(sum(v * v for v in parts)))
            assert getattr(prof, name).tolist() == pytest.approx(expected, rel=1e-12, abs=1e-300)
        assert prof.initial == pytest.approx(
            math.sqrt(sum(alone[b][prof.direction].initial ** 2 for b in range(3))), rel=1e-12
        )
    assert monitor.history[0].warnings == ()


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_a_classifier_of_h_n_alone_is_profiled_at_the_default_chunk(packed: bool) -> None:
    # `_, (h, c) = lstm(x); loss = f(h[-1])`: the output sequence takes no gradient at all (a
    # hook on it received None and raised in the user's backward), and a packed batch of
    # different lengths at the default chunk (its lengths' chunks differed, and a boundary of
    # one was missing from the whole). Reference: dL/dh_T by autograd, float64 (1e-12); the
    # direct parts are 0, and the parameter gradients equal the unmonitored model's.
    torch.manual_seed(9)
    lstm = nn.LSTM(I, H, dtype=DTYPE)
    x, _ = data(2)
    lengths = torch.tensor([T, 7, 3])

    def loss() -> Tensor:
        given = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        h_n = lstm(given)[1][0]
        return h_n[-1].pow(2).sum()

    want = torch.autograd.grad(loss(), list(lstm.parameters()))
    monitor = Monitor(lstm, None, every=1)
    with monitor.step(0) as s:
        s.loss(loss()).backward()
    for p, w in zip(lstm.parameters(), want, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, w, atol=1e-12, rtol=0)
    (prof,) = monitor.history[0].profiles
    assert prof.direct.abs().max() == 0 and prof.boundaries[-1] == T
    # the last boundary: dL/dh_n, 2 h_n of every sequence, taken by the state passed on
    final = lstm(
        nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
    )
    expected = float((2 * final[1][0][-1]).detach().norm())
    assert float(prof.recurrent[-1]) == pytest.approx(expected, rel=1e-12)


def test_lag_shares_asked_of_a_packed_batch_of_different_lengths_are_named_missing() -> None:
    torch.manual_seed(5)
    gru = nn.GRU(I, H, dtype=DTYPE)
    monitor = Monitor(gru, None, every=1, chunk=K, lag_every=1)
    x, _ = data(0)
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([T, T - 2, T - 5]))
    with monitor.step(0) as s:
        s.loss(gru(packed)[1].pow(2).sum()).backward()
    record = monitor.history[-1]
    (prof,) = record.profiles
    assert prof.lag_shares is None and prof.boundaries == (4, 8, 10)
    assert any(
        "`model` received a PackedSequence of sequences of different" in w for w in record.warnings
    )


# ---------------------------------------------------------------- the clipping audit


def clip_run(order: str, max_norm: float = 1.0, blow_up: bool = False) -> MonitorStep:
    torch.manual_seed(1)
    model = Seq(nn.GRU(I, H, dtype=torch.float32))
    opt = torch.optim.SGD(model.parameters(), 0.01)
    monitor = Monitor(model, opt, every=1, chunk=K)
    x, y = data(0, torch.float32)
    params = list(model.parameters())
    with monitor.step(0) as s:
        loss = s.loss(loss_of(model(x), y) * (1e30 if blow_up else 1.0))
        if order == "before-backward":
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        loss.backward()
        if order == "after-step":
            opt.step()
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            if order == "correct":
                torch.nn.utils.clip_grad_norm_(params, max_norm)
            opt.step()
    return monitor.history[0]


def test_correct_clipping_raises_no_warning() -> None:
    record = clip_run("correct")
    assert record.clip is not None and record.clip.warnings == () and record.warnings == ()


@pytest.mark.parametrize(
    ("order", "max_norm", "blow_up", "warning"),
    [
        ("after-step", 1.0, False, AFTER_STEP),
        ("before-backward", 1.0, False, BEFORE_BACKWARD),
        ("correct", math.inf, False, INFINITE),
        ("correct", 1.0, True, "saw an infinite total norm and scaled every gradient by max_norm"),
    ],
    ids=["after-step", "before-backward", "max-norm-inf", "zeroed-by-inf"],
)
def test_each_clipping_misuse_is_flagged(
    order: str, max_norm: float, blow_up: bool, warning: str
) -> None:
    record = clip_run(order, max_norm, blow_up)
    assert record.clip is not None
    assert any(warning in w for w in record.clip.warnings)
    assert any(warning in w for w in record.warnings)


def test_a_clip_reported_by_hand_is_audited() -> None:
    from torch.nn.utils import clip_grad_norm_  # bound before the step: not wrapped

    torch.manual_seed(1)
    model = Seq(nn.GRU(I, H, dtype=DTYPE))
    monitor = Monitor(model, every=1)
    x, y = data(0)
    with monitor.step(0) as s:
        loss_of(model(x), y).backward()
        s.clipped(clip_grad_norm_(model.parameters(), 1e-3), max_norm=1e-3)
    clip = monitor.history[0].clip
    assert clip is not None and clip.calls == 1 and clip.acted and clip.clipped_fraction == 1.0


# ---------------------------------------------------------------- writers


def test_a_log_cut_off_mid_line_reads_back_every_complete_record(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Seq(nn.LSTM(I, H, dtype=DTYPE))
    monitor = Monitor(model, every=1, log=tmp_path / "run.jsonl", chunk=K)
    train(model, monitor, 4)
    monitor.close()
    path = tmp_path / "run.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # a killed process: the last line is torn
    records = gradtrace.load(path)
    assert isinstance(records, list)
    assert records[1:] == monitor.history[:3]


def test_tensorboard_files_read_back(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = Seq(nn.LSTM(I, H, dtype=torch.float32))
    monitor = Monitor(model, every=2, log=tmp_path, tensorboard=True, chunk=K)
    history = train(model, monitor, 6)
    monitor.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    losses = [e.value for e in events.Scalars("loss")]
    assert losses == pytest.approx([r.loss for r in history], rel=1e-6)
    assert [e.step for e in events.Scalars("grad_norm/global")] == [0, 2, 4]
    assert "profile/rnn_layer_0_forward" in tags["images"]
    assert "profile/rnn_layer_0_forward" in tags["histograms"]
    assert "recurrent_share/rnn_layer_0_forward" in tags["scalars"]


def test_a_missing_extra_is_named_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_tensorboard(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'gradtrace\[tensorboard\]'"):
        Monitor(nn.Linear(2, 2), log="unused-folder", tensorboard=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, "`every` must be at least 1"),
        ({"on_nonfinite": "ignore"}, "`on_nonfinite` must be one of continue, stop"),
        ({"chunk": 0}, "`chunk` must be a whole number of steps of at least 1"),
        ({"lag_every": -1}, "`lag_every` must be a whole number of at least 1"),
        ({"tensorboard": True}, "`tensorboard` needs a `log` folder"),
        ({"log": "run.json"}, "`log` must be a folder or a .jsonl file, got 'run.json'"),
    ],
)
def test_bad_options_are_refused_in_one_sentence(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(gradtrace.GradtraceError, match=message):
        Monitor(nn.Linear(2, 2), **kwargs)


# ---------------------------------------------------------------- Lightning


# Lightning 2.6 under torch 2.13 warns about its own internals (pytree, dataloader workers).
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_the_lightning_callback_records_what_the_plain_monitor_does(tmp_path: Path) -> None:
    import lightning as L

    from gradtrace.monitor.lightning import GradtraceCallback

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = Seq(nn.LSTM(I, H, dtype=torch.float32))

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> Tensor:
            x, y = batch
            return loss_of(self(x[0]), y[0])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), 0.05)

    batches = [data(step, torch.float32) for step in range(4)]
    loader = torch.utils.data.DataLoader([(x, y) for x, y in batches], batch_size=1)
    callback = GradtraceCallback(every=1, chunk=K)
    trainer = L.Trainer(
        max_steps=4, callbacks=[callback], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
        default_root_dir=str(tmp_path), accelerator="cpu",
    )  # fmt: skip
    trainer.fit(Module(), loader)
    assert callback.monitor is not None
    lightning_history = callback.monitor.history
    module = Module()  # the same seed, a plain loop
    monitor = Monitor(module, torch.optim.SGD(module.parameters(), 0.05), every=1, chunk=K)
    for step, (x, y) in enumerate(batches):
        with monitor.step(step) as s:
            loss = s.loss(loss_of(module(x), y))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            monitor.optimizer.step()  # type: ignore[union-attr]
            monitor.optimizer.zero_grad()  # type: ignore[union-attr]
    assert [r.step for r in lightning_history] == [0, 1, 2, 3]
    for a, b in zip(lightning_history, monitor.history, strict=True):
        assert a.loss == pytest.approx(b.loss, rel=1e-5)
        assert a.grad_norm == pytest.approx(b.grad_norm, rel=1e-5)
        assert a.clip is not None and b.clip is not None and a.clip.acted == b.clip.acted
        # Lightning clips after on_before_optimizer_step: what it left is read at batch end
        assert a.clip.norm_after == pytest.approx(b.clip.norm_after, rel=1e-5)
        for pa, pb in zip(a.profiles, b.profiles, strict=True):
            torch.testing.assert_close(pa.total, pb.total, rtol=1e-5, atol=0)
        for sa, sb in zip(a.parameters, b.parameters, strict=True):
            assert sa.update_ratio == pytest.approx(sb.update_ratio, rel=1e-4)


def test_the_profile_heatmap_puts_uneven_steps_and_boundaries_at_their_places() -> None:
    # log-spaced steps 1, 2, 10 and boundaries 0, 25, 50, 57 (the last one T - 1): the map was
    # one column and one row per entry, evenly spaced, with no x label under the reproduction
    import matplotlib.pyplot as plt

    from gradtrace.plots.monitor import draw_profile_heatmap
    from gradtrace.records import TimeProfile

    def profile(scale: float, boundaries: tuple[int, ...] = (0, 25, 50, 57)) -> TimeProfile:
        total = 10.0 ** torch.arange(len(boundaries), dtype=torch.float64) * scale
        return TimeProfile(
            module="rnn", layer=0, direction="forward", cell="rnn", steps=boundaries[-1] + 1,
            chunk=25, boundaries=boundaries, recurrent=total, direct=total * 0, total=total,
            cell_state=None, initial=1.0,
        )  # fmt: skip

    fig, ax = plt.subplots()
    try:
        mesh = draw_profile_heatmap(ax, [(1, profile(1)), (2, profile(2)), (10, profile(4))], "rnn")
        corners = mesh.get_coordinates()  # (rows + 1, columns + 1, 2)
        x_edges, y_edges = corners[0, :, 0], corners[:, 0, 1]
        assert x_edges.tolist() == [0.5, 1.5, 6.0, 14.0]  # midpoints, half a gap beyond the ends
        assert y_edges.tolist() == [-12.5, 12.5, 37.5, 53.5, 60.5]
        values = mesh.get_array().reshape(4, 3)
        assert values[:, 0].tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-12)  # log10
        assert ax.get_xlabel() == "training step" and ax.get_ylabel().startswith("boundary b")
        # adding-mean draws T per batch: each profile's last boundary goes in one top row
        # (before: a row per distinct T, each mostly empty)
        varying = [(0, profile(1, (25, 50, 101))), (5, profile(1, (25, 50, 100, 104)))]
        mesh = draw_profile_heatmap(ax, varying, "rnn")
        assert mesh.get_coordinates()[:, 0, 1].tolist() == [12.5, 37.5, 75.0, 102.0, 106.0]
        values = mesh.get_array().reshape(4, 2)
        assert values[:, 0].tolist()[:2] == [0.0, 1.0] and values[3, 0] == pytest.approx(2.0)
        assert bool(values.mask[2, 0]) and values[2, 1] == pytest.approx(2.0)
        assert values[3, 1] == pytest.approx(3.0)
        assert "each batch's T" in ax.get_ylabel()
    finally:
        plt.close(fig)
