"""The lecture gallery behind `make demo`: each lecture example as a figure and a JSON record.

1. A sigmoid RNN at a random checkpoint (H = 5, T = 20) with the eigenvalues of W_hh uniform in
   [0, 4): below 1/gamma = 4, the eigenvalue criterion predicts vanishing.
2. The same with eigenvalues in [4, 14): the criterion allows exploding; the measurement shows
   what the product really does, with sigma_max and the Lyapunov exponent beside it.
3. The same two weight matrices along a real trajectory of 200 steps.
4. Along trajectories: a tanh RNN with gain 3 (chaotic: it explodes), an identity-initialised
   ReLU RNN (IRNN, Le, Jaitly, Hinton 2015: it neither vanishes nor explodes) and an LSTM with
   its cell-state path.
5. Depth: a 30-layer sigmoid MLP under PyTorch's default initialisation.
6. Dynamics (lecture 003): the logistic map at r = 3.5 with its bifurcation diagram, a 2-unit
   tanh RNN's basins of attraction, the gradient cliff of a one-unit RNN with and without
   clipping, and the Mandelbrot set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from gradtrace.analysis.curve import CurveConfig, run_curve
from gradtrace.analysis.depth import depth_profile
from gradtrace.dynamics.chaos import map_report
from gradtrace.dynamics.cliff import cliff_report
from gradtrace.dynamics.mandelbrot import mandelbrot_image
from gradtrace.dynamics.rnn_dynamics import rnn_portrait, small_rnn
from gradtrace.io.files import check_output_folder
from gradtrace.plots import plot
from gradtrace.records import Record, save

_LECTURE = CurveConfig(cell="rnn", activation="sigmoid", hidden_size=5, input_size=5, seed=12345)
EXAMPLES: dict[str, CurveConfig] = {
    "sigmoid_eig_0_4_checkpoint": replace(
        _LECTURE, steps=20, mode="checkpoint", spectrum="eig-uniform:0:4"
    ),
    "sigmoid_eig_4_14_checkpoint": replace(
        _LECTURE, steps=20, mode="checkpoint", spectrum="eig-uniform:4:14"
    ),
    "sigmoid_eig_0_4_trajectory": replace(_LECTURE, steps=200, batch=8, spectrum="eig-uniform:0:4"),
    "sigmoid_eig_4_14_trajectory": replace(
        _LECTURE, steps=200, batch=8, spectrum="eig-uniform:4:14"
    ),
    "tanh_gain_3_trajectory": CurveConfig(
        activation="tanh", hidden_size=64, steps=300, batch=4, spectrum="gaussian:3", seed=0
    ),
    "relu_identity_trajectory": CurveConfig(
        activation="relu", hidden_size=32, steps=300, spectrum="identity", seed=0
    ),
    "lstm_default_trajectory": CurveConfig(cell="lstm", hidden_size=32, steps=300, seed=0),
}

# Lines run_gallery yields: a header, each example, the MLP, four dynamics stops, a footer.
TOUR_STOPS = len(EXAMPLES) + 7


def _write(out: Path, name: str, record: Record, **options: Any) -> None:
    plot(record, out / f"{name}.png", **options)
    save(record, out / f"{name}.json")


def run_gallery(out: str | Path) -> Iterator[str]:
    """Write every example's figure and record into `out`, yielding one line per example.

    Raises:
        GradtraceError: if `out` is not a folder that can be written (checked before any work).
    """
    out = check_output_folder(out, "out")
    out.mkdir(parents=True, exist_ok=True)
    yield f"gradtrace demo: writing into {out.resolve()}"
    for name, config in EXAMPLES.items():
        flow = run_curve(config)
        _write(out, name, flow, title=f"{name}: {flow.verdict}")
        rate = f"{flow.rate_per_step:+.3g} decades/step"
        yield f"  {name}: {flow.verdict} ({rate}). {flow.note}"
    profile = depth_profile(30, 64, "sigmoid", "default", seed=0)
    _write(out, "mlp_sigmoid_depth30", profile)
    yield (
        f"  mlp_sigmoid_depth30: {profile.rate_per_layer:+.3g} decades per layer "
        "going back from the output"
    )
    yield from _dynamics(out)
    yield f"done: open {out.resolve()} for the .png figures and .json records"


def _dynamics(out: Path) -> Iterator[str]:
    """The dynamical-systems view of lecture 003, one figure and record each."""
    logistic = map_report("logistic", 3.5, bifurcation_range=(2.5, 4.0))
    _write(out, "map_logistic_3.5", logistic)
    yield f"  map_logistic_3.5: Lyapunov exponent {logistic.lyapunov.value:+.3f} per step"
    # Two self-exciting units with a weak coupling: two stable corners, saddles between them.
    portrait = rnn_portrait(small_rnn([[1.5, 0.3], [0.3, 1.5]], [0.0, 0.0]))
    _write(out, "rnn2_basins", portrait)
    kinds = [p.kind for p in portrait.fixed_points.points]
    yield f"  rnn2_basins: fixed points {', '.join(kinds)}"
    cliff = cliff_report()
    _write(out, "cliff", cliff)
    plain = float(cliff.plain.step_lengths.max())
    clipped = float(cliff.clipped.step_lengths.max())
    yield f"  cliff: longest step {plain:.3g} without clipping, {clipped:.3g} with it"
    image = mandelbrot_image(size=(360, 288))
    _write(out, "mandelbrot", image)
    yield "  mandelbrot: escape-time image of z <- z^2 + c"
