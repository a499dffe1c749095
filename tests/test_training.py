"""Training runs: seeded and reproducible, clipping as configured, divergence recorded.

References: torch.linalg.vector_norm of every gradient for the clipping threshold (to 1e-6
relative, float32 gradients); a second run of the same config for reproducibility (bit for bit:
the same seed draws the same initialisation and batches); the codec's round trip for the record.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradtrace
from gradtrace.errors import GradtraceError
from gradtrace.records import TrainRun
from gradtrace.training import TrainConfig, train
from gradtrace.training.train import _clip

SMALL = {
    "task": "adding",
    "model": "lstm",
    "length": 12,
    "hidden_size": 8,
    "batch_size": 16,
    "steps": 30,
    "eval_every": 10,
    "test_size": 64,
    "lr": 1e-2,
}


def test_same_seed_same_metrics_twice() -> None:
    a, b = train(SMALL, show_progress=False), train(SMALL, show_progress=False)
    first, second = a.to_dict(), b.to_dict()
    first.pop("seconds"), second.pop("seconds")
    assert first == second  # every metric, curve and exact flow, bit for bit
    c = train({**SMALL, "seed": 1}, show_progress=False)
    assert c.curves["train_loss"] != a.curves["train_loss"]


def test_record_reads_back_and_has_the_picture() -> None:
    run = train(SMALL, show_progress=False)
    assert run.status == "finished" and run.steps == 30
    assert TrainRun.from_dict(run.to_dict()) == run
    assert run.curves["eval_step"] == (10.0, 20.0, 30.0)
    assert run.before is not None and run.after is not None
    assert run.before.steps == SMALL["length"]
    assert run.metrics["baseline"] == pytest.approx(1 / 6, rel=1e-12)
    assert run.metrics["best_test_loss"] == min(run.curves["test_loss"])
    assert len(run.curves["recurrent_share"]) == len(run.curves["monitor_step"]) > 0


@pytest.mark.parametrize("clip", ["norm", "value"])
def test_clipping_leaves_no_norm_above_the_threshold(clip: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    (model(torch.randn(4, 5)) * 1e3).sum().backward()
    raw = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    config = TrainConfig(task="adding", model="lstm", clip=clip, max_norm=0.5)
    returned = _clip(config, model)
    assert returned == pytest.approx(float(raw), rel=1e-6)  # the raw norm, before clipping
    grads = [p.grad for p in model.parameters()]
    if clip == "norm":
        after = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
        assert float(after) <= 0.5 * (1 + 1e-6)
    else:
        assert max(float(g.abs().max()) for g in grads) <= 0.5


def test_early_stop_at_the_target() -> None:
    run = train({**SMALL, "steps": 200, "target_loss": 10.0}, show_progress=False)
    assert run.steps == 10  # the first evaluation is already below a loss of 10
    assert run.metrics["steps_to_target"] == 10


def test_a_run_that_blows_up_is_recorded_as_diverged() -> None:
    config = {
        **SMALL,
        "model": "irnn",
        "optimizer": "sgd",
        "lr": 1e6,
        "clip": "none",
        "steps": 40,
    }
    run = train(config, show_progress=False)
    assert run.status == "diverged"
    assert run.diverged_step is not None and run.diverged_step < 40
    assert run.steps == run.diverged_step + 1
    assert not math.isfinite(run.curves["train_loss"][-1]) or not math.isfinite(
        run.curves["grad_norm"][-1]
    )
    assert run.nonfinite is not None
    assert run.after is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"task": "addition"}, "`task`"),
        ({"model": "transformer"}, "`model`"),
        ({"length": -3}, "`length`"),
        ({"lr": 0}, "`lr`"),
        ({"clip": "sometimes"}, "`clip`"),
        ({"optimizer": "lbfgs"}, "`optimizer`"),
        ({"colour": "red"}, "'colour'"),
        ({"task": "mnist"}, "`mnist_path`"),
        ({"task": "mnist", "mnist_path": "/no/such/mnist.npz"}, "`mnist_path`"),
    ],
)
def test_bad_config_names_the_field(change: dict, named: str) -> None:
    with pytest.raises(GradtraceError, match=named.replace("`", ".")):
        TrainConfig.from_dict({**SMALL, **change})


def test_key_is_the_config() -> None:
    a = TrainConfig.from_dict(SMALL)
    assert a.key() == TrainConfig.from_dict(dict(reversed(SMALL.items()))).key()
    assert a.key() != TrainConfig.from_dict({**SMALL, "seed": 1}).key()
    assert TrainConfig.from_dict(a.to_dict()) == a


def test_public_train_is_this_one() -> None:
    assert gradtrace.train is train


def test_an_image_task_runs_at_its_own_length_when_none_is_given() -> None:
    # the digits are 64 pixels; mnist 784; every other task defaults to 100 (keys unchanged)
    config = TrainConfig.from_dict({"task": "digits", "model": "lstm"})
    assert config.length == 64
    assert TrainConfig.from_dict({"task": "adding", "model": "lstm"}).length == 100
    explicit = {"task": "adding", "model": "lstm", "length": 100}
    assert TrainConfig.from_dict({"task": "adding", "model": "lstm"}) == TrainConfig(**explicit)


def test_a_run_over_the_budget_is_refused_before_anything_is_built() -> None:
    # T = 10,000, H = 1024, B = 64: autograd keeps about 18 GB of activations for one backward
    huge = {**SMALL, "length": 10_000, "hidden_size": 1024, "batch_size": 64, "test_size": 64}
    with gradtrace.budget(max_memory="6GB"), pytest.raises(GradtraceError, match="of memory"):
        train(huge, show_progress=False)
    # a run that fits in memory but would take hours names `steps` (the sweep path does not
    # price time: a sweep is long by design)
    long = {**SMALL, "steps": 10**7}
    with gradtrace.budget(max_seconds=60), pytest.raises(GradtraceError, match="`steps`"):
        train(long, show_progress=False)


def test_the_run_estimate_is_within_a_factor_of_the_arithmetic() -> None:
    # closed form: 6 flops per multiply-add of an LSTM step (4 gates, H (H + I) each, plus the
    # readout), B T of them per optimizer step, at the float32 rate
    from gradtrace.tasks import make_task
    from gradtrace.training.train import FLOAT32_SPEEDUP, run_work

    config = TrainConfig.from_dict({**SMALL, "hidden_size": 32, "steps": 100, "eval_every": 40})
    task = make_task("adding", 12)
    H, I, O, B, T = 32, task.input_size, task.output_size, 16, task.max_steps
    train_flops = 100 * 6.0 * B * T * (4 * H * (H + I) + H * O)
    test_flops = 3 * 2.0 * 64 * T * (4 * H * (H + I) + H * O)  # evaluations at 40, 80, 100
    work = run_work(config, task)
    assert work.flops == pytest.approx((train_flops + test_flops) / FLOAT32_SPEEDUP, rel=1e-12)
    assert work.memory >= 4.0 * B * T * 7 * H  # the gates, c, h, tanh(c) of every step


def test_the_dependency_is_drawn_where_the_curves_reach_it_and_named_beyond() -> None:
    # adding-mean's dependency (108 at T = 100) was drawn left of every curve of a test set
    # whose sequences were shorter; now it is a line inside the measured range only
    import dataclasses

    import matplotlib.pyplot as plt

    from gradtrace.plots.training import _dependency

    run = train(SMALL, show_progress=False)
    assert run.before is not None
    measured = run.before.steps
    fig, ax = plt.subplots()
    try:
        for dependency in (measured - 2, measured + 50):
            changed = dataclasses.replace(run, metrics={**run.metrics, "dependency": dependency})
            _dependency(ax, changed)
        lines = {line.get_label(): line.get_xdata() for line in ax.get_lines()}
        assert list(lines[f"dependency {measured - 2}"]) == [-(measured - 2)] * 2
        beyond = f"dependency {measured + 50} (> {measured} steps measured)"
        assert len(lines[beyond]) == 0  # in the legend only
    finally:
        plt.close(fig)
