"""Lyapunov spectra against closed forms, a two-trajectory simulation and torch.linalg.

Tests for gradtrace.core.lyapunov, in float64. References: Newman's closed form for Gaussian
products (0.03, a statistical tolerance), Benettin's two-trajectory simulation (5e-3),
log |det J_t| from torch.linalg.slogdet (1e-8), log |a_i| for a constant diagonal (1e-12),
and from the backward frame (`backward_frame`) the product's own singular values by
torch.linalg.svdvals (1e-10). The
result is the record `gradtrace.records.flow.LyapunovSpectrum`; its dict goes through the
codec (a -inf exponent as "-Infinity") and back bit for bit.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor

from gradtrace.core.lyapunov import (
    backward_frame,
    lyapunov_spectrum,
    lyapunov_spectrum_streaming,
    start_frame,
    top_exponent,
)
from gradtrace.errors import GradtraceError
from gradtrace.records.flow import LyapunovSpectrum

DTYPE = torch.float64


def _gaussian_jacobians(T: int, S: int, seed: int, batch: tuple[int, ...] = ()) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(T, *batch, S, S, generator=gen, dtype=DTYPE) / math.sqrt(S)


def test_newman_closed_form_for_gaussian_products() -> None:
    # Newman (1986), "The distribution of Lyapunov exponents: exact results for random
    # matrices": for i.i.d. N x N matrices with N(0, g^2/N) entries,
    # lambda_i = ln g + (ln(2/N) + digamma((N - i + 1)/2)) / 2.
    # J Q is again such a matrix for any orthonormal Q, so the local factors are i.i.d. and
    # each exponent has standard error sqrt(trigamma((N - i + 1)/2) / (4T)); the worst, i = N,
    # is sqrt(pi^2 / 8 / T) = 0.011 at T = 10000, so 0.03 is 2.7 of those and 20 or more for
    # the top exponents.
    N, g, T = 32, 1.5, 10_000
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(T, N, N, generator=gen, dtype=DTYPE) * (g / math.sqrt(N))
    spectrum = lyapunov_spectrum(J, generator=gen)
    i = torch.arange(1, N + 1, dtype=DTYPE)
    newman = math.log(g) + 0.5 * (math.log(2 / N) + torch.special.digamma((N - i + 1) / 2))
    assert spectrum.exponents.shape == (N,)
    assert spectrum.steps == T
    torch.testing.assert_close(spectrum.exponents, newman, atol=0.03, rtol=0)


def test_top_exponent_matches_two_trajectory_simulation() -> None:
    # Benettin et al. (1980): follow h and h + eps * delta through the nonlinear map
    # h_t = tanh(W h_{t-1} + b), rescale the separation to eps every step and average the log
    # growth. It never forms a Jacobian; the QR method uses J_t = diag(1 - h_t^2) W on the same
    # trajectory. Both see the same trajectory, so they share its sampling noise: they differ
    # only by the transient from their independent start directions (order 1/T, about 5e-4
    # here) and by O(eps) curvature terms. The tolerance 5e-3 is ten times the transient.
    N, g, eps, burn_in, T = 16, 3.0, 1e-8, 500, 3000
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(N, N, generator=gen, dtype=DTYPE) * (g / math.sqrt(N))
    b = 0.1 * torch.randn(N, generator=gen, dtype=DTYPE)
    h = torch.randn(N, generator=gen, dtype=DTYPE)
    for _ in range(burn_in):
        h = torch.tanh(W @ h + b)
    delta = torch.randn(N, generator=gen, dtype=DTYPE)
    delta = delta / delta.norm()
    jacobians, log_growth = [], 0.0
    for _ in range(T):
        h_perturbed = torch.tanh(W @ (h + eps * delta) + b)
        h = torch.tanh(W @ h + b)
        jacobians.append((1 - h**2).unsqueeze(-1) * W)  # (N, N)
        separation = h_perturbed - h
        log_growth += math.log(separation.norm().item() / eps)
        delta = separation / separation.norm()
    spectrum = lyapunov_spectrum(torch.stack(jacobians), k=2, generator=gen)
    assert spectrum.top.item() > 0.1, "the map should be chaotic for this seed and gain"
    assert spectrum.top.item() == pytest.approx(log_growth / T, abs=5e-3)


def test_sum_of_exponents_is_mean_log_abs_det() -> None:
    # With K = S, prod_i R_t[i, i] = |det(J_t Q_{t-1})| = |det J_t| every step.
    J = _gaussian_jacobians(T=300, S=6, seed=2) + 0.3 * torch.eye(6, dtype=DTYPE)
    spectrum = lyapunov_spectrum(J, generator=torch.Generator().manual_seed(3))
    _, logabsdet = torch.linalg.slogdet(J)
    assert spectrum.exponents.sum().item() == pytest.approx(logabsdet.mean().item(), abs=1e-8)
    torch.testing.assert_close(spectrum.local_log_factors.sum(-1), logabsdet, atol=1e-8, rtol=0)


def test_constant_diagonal_jacobian_gives_log_abs_entries() -> None:
    a = torch.tensor([0.5, -3.0, 1.0, -0.1, 2.0], dtype=DTYPE)
    J = torch.diag(a).expand(40, 5, 5)
    spectrum = lyapunov_spectrum(J, q0=torch.eye(5, dtype=DTYPE))
    expected = a.abs().log().sort(descending=True).values
    torch.testing.assert_close(spectrum.exponents, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        spectrum.local_log_factors, expected.expand(40, 5), atol=1e-12, rtol=0
    )
    assert spectrum.top.item() == pytest.approx(math.log(3.0), abs=1e-12)


def test_annihilated_direction_gives_minus_infinity() -> None:
    J = torch.diag(torch.tensor([2.0, 0.0], dtype=DTYPE)).expand(10, 2, 2)
    spectrum = lyapunov_spectrum(J, q0=torch.eye(2, dtype=DTYPE))
    assert spectrum.exponents[0].item() == pytest.approx(math.log(2.0), abs=1e-12)
    assert spectrum.exponents[1].item() == -math.inf


def test_spectrum_is_a_record_that_round_trips_with_minus_infinity() -> None:
    J = torch.diag(torch.tensor([2.0, 0.0], dtype=DTYPE)).expand(10, 2, 2)
    spectrum = lyapunov_spectrum(J, q0=torch.eye(2, dtype=DTYPE))
    assert isinstance(spectrum, LyapunovSpectrum)
    data = json.loads(json.dumps(spectrum.to_dict(), allow_nan=False))  # strict JSON
    assert data["exponents"]["shape"] == [2]
    assert data["exponents"]["data"][1] == "-Infinity"
    assert data["local_log_factors"]["shape"] == [10, 2]
    again = LyapunovSpectrum.from_dict(data)
    assert again == spectrum
    assert again.steps == 10
    assert again.top.item() == pytest.approx(math.log(2.0), abs=1e-12)


def test_batched_equals_per_item() -> None:
    J = _gaussian_jacobians(T=80, S=5, seed=4, batch=(3,))  # (T, B, S, S)
    q0 = torch.linalg.qr(torch.randn(3, 5, 2, dtype=DTYPE)).Q  # (B, S, K)
    batched = lyapunov_spectrum(J, k=2, q0=q0)
    assert batched.exponents.shape == (3, 2)
    assert batched.local_log_factors.shape == (80, 3, 2)
    assert batched.top.shape == (3,)
    for item in range(3):
        single = lyapunov_spectrum(J[:, item], k=2, q0=q0[item])
        torch.testing.assert_close(batched.exponents[item], single.exponents, atol=1e-12, rtol=0)
        torch.testing.assert_close(
            batched.local_log_factors[:, item], single.local_log_factors, atol=1e-12, rtol=0
        )


def test_shared_random_start_matches_per_item_with_same_seed() -> None:
    J = _gaussian_jacobians(T=50, S=4, seed=5, batch=(2,))
    batched = lyapunov_spectrum(J, generator=torch.Generator().manual_seed(6))
    for item in range(2):
        single = lyapunov_spectrum(J[:, item], generator=torch.Generator().manual_seed(6))
        torch.testing.assert_close(batched.exponents[item], single.exponents, atol=1e-12, rtol=0)


def test_streaming_equals_stacked() -> None:
    J = _gaussian_jacobians(T=60, S=4, seed=7)
    stacked = lyapunov_spectrum(J, k=3, generator=torch.Generator().manual_seed(8))
    streamed = lyapunov_spectrum_streaming(
        (J_t for J_t in J), k=3, generator=torch.Generator().manual_seed(8)
    )
    assert isinstance(streamed, LyapunovSpectrum)
    torch.testing.assert_close(streamed.exponents, stacked.exponents, atol=0, rtol=0)
    torch.testing.assert_close(
        streamed.local_log_factors, stacked.local_log_factors, atol=0, rtol=0
    )


def test_float32_matches_float64_to_the_documented_precision() -> None:
    # The docstring's claim for S = 8: top local factor within 1e-5 relative per step, the
    # exponents within 1e-6 absolute (measured 4.5e-6 and 7.5e-7; tolerances 5e-5 and 1e-5).
    J = _gaussian_jacobians(T=500, S=8, seed=9)
    q0 = torch.eye(8, dtype=DTYPE)
    reference = lyapunov_spectrum(J, q0=q0)
    single = lyapunov_spectrum(J.float(), q0=q0.float())
    torch.testing.assert_close(
        single.local_log_factors[:, 0].double(),
        reference.local_log_factors[:, 0],
        atol=5e-5,
        rtol=0,
    )
    torch.testing.assert_close(single.exponents.double(), reference.exponents, atol=1e-5, rtol=0)


def _nan_at_step_3(shape: tuple[int, ...]) -> Tensor:
    J = torch.ones(shape, dtype=DTYPE)
    J[2, 0, 0] = math.nan
    return J


BAD_STACKED = [
    pytest.param(torch.ones(4, 3), {}, "`jacobians` must have shape", id="ndim-2"),
    pytest.param(torch.ones(4, 3, 2), {}, "`jacobians` must have shape", id="non-square"),
    pytest.param(torch.ones(0, 3, 3), {}, "at least one step", id="no-steps"),
    pytest.param(torch.ones(4, 3, 3, dtype=torch.int64), {}, "floating dtype", id="integer"),
    pytest.param(_nan_at_step_3((4, 3, 3)), {}, "must be finite", id="nan"),
    pytest.param(torch.ones(4, 3, 3), {"k": 0}, "`k` must be an integer from 1", id="k-zero"),
    pytest.param(torch.ones(4, 3, 3), {"k": 4}, "`k` must be an integer from 1", id="k-above-S"),
    pytest.param(torch.ones(4, 3, 3), {"q0": torch.eye(2)}, "`q0` must have shape", id="q0"),
    pytest.param([[1.0]], {}, "`jacobians` must be a torch.Tensor", id="list"),
]


@pytest.mark.parametrize(("jacobians", "kwargs", "message"), BAD_STACKED)
def test_bad_input_raises(jacobians: Tensor, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(GradtraceError, match=message):
        lyapunov_spectrum(jacobians, **kwargs)  # type: ignore[arg-type]


BAD_STREAMS = [
    pytest.param([], "at least one Jacobian", id="empty"),
    pytest.param([torch.ones(3)], "must yield \\(S, S\\)", id="vector"),
    pytest.param([torch.eye(3), torch.eye(4)], "first step's shape", id="shape-change"),
    pytest.param(
        [torch.eye(3), torch.eye(3, dtype=DTYPE)], "dtype torch.float32", id="dtype-change"
    ),
    pytest.param(list(_nan_at_step_3((4, 3, 3))), "at step 3", id="nan-at-step-3"),
]


@pytest.mark.parametrize(("steps", "message"), BAD_STREAMS)
def test_bad_stream_raises(steps: list[Tensor], message: str) -> None:
    with pytest.raises(GradtraceError, match=message):
        lyapunov_spectrum_streaming(iter(steps))


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
def test_top_exponent_by_the_vector_sweep_equals_the_qr_method(batched: bool) -> None:
    # The K = 1 QR method and the engine's vector sweep compute the same (1/T) ln ||P_T v0||.
    shape = (300, 3, 6, 6) if batched else (300, 6, 6)
    J = torch.randn(*shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64) / 2
    q0 = start_frame(6, 1, 0)
    expected = float(lyapunov_spectrum(J, 1, q0=q0).exponents.mean())
    assert top_exponent(J) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- the backward frame


def test_from_the_backward_frame_a_constant_diagonal_gives_its_logs_without_a_transient() -> None:
    # P = D^T for D = diag(2, 1, 1/2): sigma_i(P) = a_i^T, so the finite-time exponents are
    # ln a_i exactly. The backward frame is e_1, e_2, e_3 to within (a_{i+1} / a_i)^T = 2^-40,
    # so the QR method from it gives them to rounding (1e-12); from a random frame the first
    # exponent is low by ln |q_1 . e_1| / T, far more than that.
    a = torch.tensor([2.0, 1.0, 0.5], dtype=DTYPE)
    J = torch.diag(a).expand(40, 2, 3, 3).clone()  # two sequences
    frame = backward_frame(J, start_frame(3, 3, seed=1))
    assert frame.shape == (2, 3, 3)
    torch.testing.assert_close(frame.mT @ frame, torch.eye(3, dtype=DTYPE).expand(2, 3, 3))
    warm = lyapunov_spectrum(J, q0=frame).exponents
    torch.testing.assert_close(warm, a.log().expand(2, 3), atol=1e-12, rtol=0)
    cold = lyapunov_spectrum(J, q0=start_frame(3, 3, seed=1)).exponents
    assert float((cold - a.log()).abs().max()) > 1e-3


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
def test_top_exponent_from_the_backward_frame_is_the_products_own_growth(batched: bool) -> None:
    # Reference: (1/T) ln sigma_1 of the explicit product by torch.linalg.svdvals, the product
    # multiplied out with its scale kept apart (1e-10). Small states take the blocked path.
    shape = (300, 3, 6, 6) if batched else (300, 6, 6)
    J = torch.randn(*shape, generator=torch.Generator().manual_seed(4), dtype=DTYPE) / 2
    P, log_scale = torch.eye(6, dtype=DTYPE).expand(*shape[1:-2], 6, 6), 0.0
    for t in range(shape[0]):
        P = J[t] @ P
        peak = P.abs().amax(dim=(-2, -1), keepdim=True)
        P, log_scale = P / peak, log_scale + peak.log()
    exact = (torch.linalg.svdvals(P)[..., 0].log() + torch.as_tensor(log_scale).flatten()) / 300
    frame = backward_frame(J, start_frame(6, 1, seed=0))
    assert top_exponent(J, start=frame[..., 0]) == pytest.approx(float(exact.mean()), abs=1e-10)
