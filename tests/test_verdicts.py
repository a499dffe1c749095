"""The verdict and the note agree with the numbers, in each case an audit found them not to.

References (float64): closed forms where they exist (a linear RNN with W_hh = a Q, Q orthogonal,
has c(k) = a^(T-k) exactly; an identity ReLU RNN whose units stay on has c(k) = 1 exactly; a
product of ReLU steps that switches every unit off is exactly 0), else the curve itself: the
verdict must follow from the record's own numbers by the rules of `gradtrace.core.theory`, and
the note must say what the verdict says.
"""

from __future__ import annotations

import math

import pytest
import torch

import gradtrace
from gradtrace.core import theory
from gradtrace.records import GradientFlow

F64 = torch.float64
# The words the note uses for each verdict, and words it must then not use.
SAYS = {
    "vanishing": ("vanishes", "exactly zero"),
    "exploding": ("explodes",),
    "neutral": ("keeps its size",),
    "transient growth": ("transient growth",),
}


def agrees(flow: GradientFlow) -> None:
    """The note's measurement sentence says what the verdict says, and nothing else."""
    measured = flow.note.split("measured: ", 1)[1].split(". ", 1)[0]
    assert any(word in measured for word in SAYS[flow.verdict]), (flow.verdict, measured)
    for verdict, words in SAYS.items():
        if verdict != flow.verdict and not (flow.verdict == "vanishing" and verdict == "neutral"):
            assert not any(w in measured for w in words), (flow.verdict, measured)


def test_transient_growth_of_a_non_normal_w_is_not_called_vanishing() -> None:
    # The audit's case: every c(k) is at least 77 over 10 steps, yet the slope is negative.
    flow = gradtrace.curve(
        activation="linear", hidden_size=64, steps=10, spectrum="eig-uniform:0:0.99"
    )
    c = flow.log10_norm[0]
    assert float(c.min()) > math.log10(70)  # amplified at every k
    assert flow.rate_per_step < -theory.NEUTRAL_BAND  # and decaying at its end
    assert flow.theory.spectral_radius < 1 < flow.theory.sigma_max  # non-normal W_hh
    assert flow.verdict == "transient growth"
    assert "non-normal" in flow.note and "amplified" in flow.note
    assert "vanishing and the measurement agrees" not in flow.note
    agrees(flow)


def test_a_slow_contraction_is_neutral_and_the_note_does_not_say_it_vanishes() -> None:
    # W = 0.999 Q, linear: c(k) = 0.999^(T-k) exactly, -0.000435 decades per step.
    flow = gradtrace.curve(activation="linear", spectrum="orthogonal:0.999", steps=300)
    n = torch.arange(300, 0, -1, dtype=F64)
    torch.testing.assert_close(flow.log10_norm[0], n * math.log10(0.999), atol=1e-10, rtol=0)
    assert flow.rate_per_step == pytest.approx(math.log10(0.999), abs=1e-12)
    assert flow.verdict == "neutral"
    assert "and it vanishes" not in flow.note and "obeys it" not in flow.note
    assert "keeps its size" in flow.note and "longer spans" in flow.note
    agrees(flow)


@pytest.mark.parametrize(
    ("options", "verdict"),
    [
        ({"activation": "linear", "spectrum": "orthogonal:0.999"}, "neutral"),
        ({"activation": "linear", "spectrum": "orthogonal:0.5"}, "vanishing"),
        ({"activation": "linear", "spectrum": "orthogonal:3"}, "exploding"),
        ({"activation": "sigmoid", "hidden_size": 5}, "vanishing"),
        ({"cell": "lstm", "hidden_size": 6}, None),
    ],
    ids=["slow", "half", "triple", "sigmoid", "lstm"],
)
def test_one_step_has_a_rate_from_the_identity(options: dict[str, object], verdict: str) -> None:
    # T = 1: one point; the identity at n = 0 (c = 1) is the second, so the rate is log10 c.
    flow = gradtrace.curve(steps=1, **options)
    assert flow.rate_per_step == pytest.approx(float(flow.log10_norm[0, 0]), abs=1e-12)
    if verdict is not None:
        assert flow.verdict == verdict
    assert flow.horizon == 1
    agrees(flow)


def test_identity_relu_is_neutral_along_its_trajectory() -> None:
    # Units that stay on pass the gradient unchanged through W_hh = I: c(k) = 1 exactly.
    flow = gradtrace.curve(activation="relu", spectrum="identity", steps=100)
    assert bool((flow.log10_norm == 0).all())
    assert flow.verdict == "neutral" and flow.horizon == 100
    assert "saturated" not in flow.note
    agrees(flow)


def test_identity_relu_at_a_zeroing_checkpoint_is_exactly_zero_and_says_why() -> None:
    # At random N(0, 1) states about half the units are off each step: after a few steps the
    # product is exactly 0, and before that exactly 1 (W_hh = I on the units still on).
    flow = gradtrace.curve(activation="relu", spectrum="identity", steps=20, mode="checkpoint")
    c = flow.log10_norm[0]
    zero = torch.nonzero(c == -math.inf).flatten()
    assert zero.numel() > 0 and bool((c[: int(zero.max()) + 1] == -math.inf).all())
    assert bool((c[int(zero.max()) + 1 :] == 0).all())
    first_zero = 20 - int(zero.max())  # n = T - k of the latest zero
    assert flow.verdict == "vanishing"
    assert flow.horizon == first_zero - 1
    assert f"exactly zero from {first_zero} steps back" in flow.note
    assert "switched-off" in flow.note and "saturated" not in flow.note
    agrees(flow)


CONFIGS = [
    {"cell": cell, "activation": act, "spectrum": spec, "steps": steps, "seed": seed}
    for cell, act in (("rnn", "tanh"), ("rnn", "sigmoid"), ("rnn", "relu"), ("gru", "tanh"))
    for spec in (None, "radius:1.5", "eig-uniform:0:0.9", "orthogonal")
    for steps in (1, 3, 40)
    for seed in (0,)
]


@pytest.mark.parametrize("options", CONFIGS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_the_verdict_follows_from_the_curve_and_the_note_agrees(options: dict[str, object]) -> None:
    flow = gradtrace.curve(hidden_size=8, **options)
    again = theory.judge(flow.log10_norm.mean(dim=0), flow.metric, flow.proj_size)
    assert (again.verdict, again.horizon) == (flow.verdict, flow.horizon)
    assert again.rate_per_step == flow.rate_per_step
    if flow.verdict == "exploding":
        assert flow.rate_per_step > theory.NEUTRAL_BAND
    if flow.verdict == "neutral":
        assert abs(flow.rate_per_step) <= theory.NEUTRAL_BAND
    agrees(flow)


@pytest.mark.parametrize(
    ("values", "verdict"),
    [
        # k = 0 is the farthest step back (n = T): a decaying curve rises with k.
        ([2.5, 2.6, 2.7, 2.8, 2.9, 3.0], "transient growth"),  # 300x amplified, decaying
        ([-0.2, -0.1, 0.0, 0.1, 0.2, 0.3], "vanishing"),  # less than 10x above the identity
        ([-5.0, -4.0, -3.0, -2.0, -1.0, 0.0], "vanishing"),
        ([1.0] * 6, "neutral"),
        ([-math.inf, -math.inf, 0.0, 0.0, 0.0, 0.0], "vanishing"),
    ],
    ids=["transient", "small-amplification", "plain-decay", "flat", "zero"],
)
def test_judge_on_constructed_curves(values: list[float], verdict: str) -> None:
    assert theory.judge(torch.tensor(values, dtype=F64)).verdict == verdict
