"""Streaming: every sweep built from a replay's stored states, a chunk of step Jacobians at a
time, gives the numbers of the same sweep over the materialised (T, B, S, S) tensor, and never
asks for more than one chunk at once.

References, float64: the materialised Jacobians `Replay.jacobians()` through the same entry
points (1e-12 absolute on log10 and on exponents: the two differ only in which products are
formed, a few ulps); for the certified spectral norm, torch.linalg.svdvals of explicit products
P_k = J_T ... J_{k+1} (1e-10 relative: the certificate's own tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from gradtrace.cells import Replay, get_cell, random_weights, replay
from gradtrace.core.engine import METRICS, contribution_curve
from gradtrace.core.factors import CHUNK_BYTES, Factors
from gradtrace.core.gradient_profile import loss_gradient_profile
from gradtrace.core.lyapunov import lyapunov_spectrum, source_spectrum, start_frame, top_exponent
from gradtrace.core.theory import norm_product_bound_log10

DTYPE = torch.float64
ATOL = 1e-12

# (cell, activation, H, B, T): S = 3 and S = 6 take the blocked regime, S = 40 with B = 4 the
# sequential one (B S^2 >= 4096), S = 40 and 80 carry the certified spectral subspace.
PROBLEMS = [
    pytest.param("rnn", "tanh", 3, 2, 150, id="rnn-tanh-H3-blocked"),
    pytest.param("rnn", "relu", 40, 4, 90, id="rnn-relu-H40-sequential"),
    pytest.param("rnn", "sigmoid", 6, 1, 70, id="rnn-sigmoid-H6-B1"),
    pytest.param("lstm", None, 3, 2, 100, id="lstm-H3-blocked"),
    pytest.param("lstm", None, 40, 4, 70, id="lstm-H40-sequential"),
    pytest.param("gru", None, 5, 3, 100, id="gru-H5-blocked"),
    pytest.param("gru", None, 40, 4, 75, id="gru-H40-sequential"),
]


def make_replay(cell: str, activation: str | None, H: int, B: int, T: int) -> Replay:
    weights = random_weights(
        cell, H, 4, spectrum="radius:1.1", activation=activation or "tanh", seed=H + T
    )
    gen = torch.Generator().manual_seed(B + T)
    x = torch.randn(T, B, 4, generator=gen, dtype=DTYPE)
    s0 = 0.3 * torch.randn(B, weights.state_size, generator=gen, dtype=DTYPE)
    return replay(get_cell(cell), weights, x, s0)


@dataclass
class Watched:
    """A step source that records the largest chunk any sweep asks it for."""

    inner: Replay
    largest: int = 0

    steps = property(lambda self: self.inner.steps)
    batch = property(lambda self: self.inner.batch)
    size = property(lambda self: self.inner.size)
    dtype = property(lambda self: self.inner.dtype)
    device = property(lambda self: self.inner.device)

    def factors(self, start: int, stop: int) -> Factors:
        self.largest = max(self.largest, stop - start)
        return self.inner.factors(start, stop)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("cell", "activation", "H", "B", "T"), PROBLEMS)
def test_streamed_curve_equals_the_materialised_sweep(
    cell: str, activation: str | None, H: int, B: int, T: int, metric: str
) -> None:
    run = make_replay(cell, activation, H, B, T)
    P = run.weights.proj_size
    block: dict[str, Any] = {"rows": slice(0, P), "cols": slice(0, P)} if cell == "lstm" else {}
    dense = contribution_curve(run.jacobians(), metric, **block).log10_norm
    streamed = contribution_curve(run, metric, **block).log10_norm
    torch.testing.assert_close(streamed, dense, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("cell", "activation", "H", "B", "T"), PROBLEMS)
def test_streamed_loss_profile_lyapunov_and_bound_equal_the_materialised_ones(
    cell: str, activation: str | None, H: int, B: int, T: int
) -> None:
    run = make_replay(cell, activation, H, B, T)
    J = run.jacobians()
    g = torch.randn(B, run.size, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    torch.testing.assert_close(
        loss_gradient_profile(run, g).log10_norm,
        loss_gradient_profile(J, g).log10_norm,
        atol=ATOL,
        rtol=0,
    )
    assert top_exponent(run, seed=2) == pytest.approx(top_exponent(J, seed=2), abs=ATOL)
    k = min(3, run.size)
    q0 = start_frame(run.size, k, seed=4)
    streamed = source_spectrum(run, k, q0)
    dense = lyapunov_spectrum(J, k, q0=q0)
    torch.testing.assert_close(streamed.exponents, dense.exponents, atol=ATOL, rtol=0)
    torch.testing.assert_close(
        norm_product_bound_log10(run, "spectral"),
        norm_product_bound_log10(J, "spectral"),
        atol=1e-10,  # sums of T step norms, each from its own decomposition
        rtol=0,
    )


@pytest.mark.parametrize("metric", METRICS)
def test_a_sweep_asks_for_one_chunk_at_a_time(metric: str) -> None:
    # 2,000 steps of a 40-unit GRU with B = 4 are 102 MB of Jacobians; the sweep may hold one
    # chunk of CHUNK_BYTES (16 MiB) at a time.
    run = make_replay("gru", None, 40, 4, 2000)
    watched = Watched(run)
    curve = contribution_curve(watched, metric).log10_norm
    per_step = run.batch * run.size**2 * 8
    assert 1 <= watched.largest <= max(1, CHUNK_BYTES // per_step)
    assert watched.largest < run.steps
    assert curve.shape == (4, 2000) and bool(torch.isfinite(curve).all())


@pytest.mark.parametrize(("S", "B", "T"), [(64, 2, 300), (96, 1, 120), (48, 3, 200)])
def test_certified_spectral_norm_equals_the_svd_to_1e_10_relative(S: int, B: int, T: int) -> None:
    # Products that keep a spread of singular values (a slowly rotating, gently contracting
    # map) so the carried subspace is refined across chunks; the SVD of every explicit
    # product is the reference.
    gen = torch.Generator().manual_seed(S + T)
    Q, _ = torch.linalg.qr(torch.randn(T, B, S, S, generator=gen, dtype=DTYPE))
    decay = torch.linspace(1.0, 0.97, S, dtype=DTYPE)
    J = (Q * decay) + 0.05 * torch.randn(T, B, S, S, generator=gen, dtype=DTYPE) / math.sqrt(S)
    P = J[T - 1].clone()
    expected = [torch.linalg.svdvals(P)[..., 0]]
    logs = torch.zeros(B, dtype=DTYPE)
    for k in range(T - 2, -1, -1):  # P_k = P_{k+1} J_{k+1}, rescaled, with its log scale
        P = P @ J[k]
        peak = P.abs().amax(dim=(-2, -1))
        P = P / peak.view(B, 1, 1)
        logs = logs + torch.log(peak)
        expected.append(torch.linalg.svdvals(P)[..., 0] * torch.exp(logs))
    want = torch.stack(expected[::-1], dim=1)  # (B, T)
    got = 10 ** contribution_curve(J, "spectral").log10_norm
    assert float(((got - want).abs() / want).max()) <= 1e-10


def explicit_log10_sigma(
    J: torch.Tensor, before: Callable[[int, torch.Tensor], None] | None = None
) -> torch.Tensor:
    """The reference curve: log10 sigma_1 of every explicit product J_T ... J_{k+1} of
    (T, S, S) steps by torch.linalg.svdvals, each product rescaled to a largest entry of 1 with
    its log scale kept; `before(k, P)` may change J[k] from the product so far. (T,) float64."""
    P, logs, want = torch.eye(J.shape[-1], dtype=J.dtype), 0.0, []
    for k in range(J.shape[0] - 1, -1, -1):
        if before is not None:
            before(k, P)
        P = P @ J[k]
        peak = float(P.abs().max())
        P, logs = P / peak, logs + math.log(peak)
        want.append(math.log10(float(torch.linalg.svdvals(P)[0])) + logs / math.log(10))
    return torch.tensor(want[::-1], dtype=DTYPE)


def test_the_mass_outside_the_carried_subspace_settles_a_product_only_when_negligible() -> None:
    # lambda_1 <= ||M||_F^2 - theta_2 - ... - theta_r: with U spanning the top r left singular
    # vectors and a tail of singular values 1e-8 below sigma_1 the bound is within 1e-12 of
    # theta_1; a U that misses the top vector leaves the top mass outside and must not settle.
    # Reference: torch.linalg.svdvals, float64.
    from gradtrace.core.spectral import settled

    gen = torch.Generator().manual_seed(5)
    R, r = 40, 6
    U0, _ = torch.linalg.qr(torch.randn(R, R, generator=gen, dtype=DTYPE))
    V0, _ = torch.linalg.qr(torch.randn(R, R, generator=gen, dtype=DTYPE))
    top = torch.tensor([3.0, 2.0, 1.5, 1.0, 0.5, 0.2], dtype=DTYPE)
    sigma = torch.cat([top, torch.full((R - r,), 1e-8, dtype=DTYPE)])
    M = U0 @ torch.diag(sigma) @ V0.T
    exact = torch.linalg.svdvals(M)[0].pow(2)
    U = U0[:, :r]
    frob = torch.linalg.matrix_norm(M).pow(2)
    theta, ok = settled(U.T @ M, frob)
    assert bool(ok) and abs(float(theta / exact) - 1) <= 1e-12
    U_missing = U0[:, 1 : r + 1]  # spans the 2nd..7th singular vectors, not the 1st
    theta, ok = settled(U_missing.T @ M, frob)
    assert not bool(ok) and float(theta) < 0.5 * float(exact)


def test_long_products_are_settled_without_a_residual(monkeypatch: pytest.MonkeyPatch) -> None:
    # Gaussian steps (H = 48, T = 800): once the singular values beyond the carried subspace
    # have fallen 1e-6 below sigma_1 a product needs no Ritz residual; the curve still equals
    # the SVD of every explicit product to 1e-10 relative.
    import gradtrace.core.spectral as spectral

    seen: list[int] = []
    first_tier = spectral._first_tier

    def counted(Y: torch.Tensor, frob: torch.Tensor) -> Any:
        theta, ok, far = first_tier(Y, frob)
        seen.append(int(ok.sum()))
        return theta, ok, far

    monkeypatch.setattr(spectral, "_first_tier", counted)
    T, S = 800, 48
    J = torch.randn(T, S, S, generator=torch.Generator().manual_seed(8), dtype=DTYPE)
    J /= math.sqrt(S)
    want = explicit_log10_sigma(J)
    got = contribution_curve(J, "spectral").log10_norm
    assert float((got - want).abs().max()) <= 1e-10 / math.log(10)
    assert T // 2 < sum(seen) < T  # most products were settled, the short ones were not


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_every_tier_of_the_certificate_meets_its_tolerance(dtype: torch.dtype, tol: float) -> None:
    # Three kinds of matrices, one per tier: a dominant top singular value that the carried
    # subspace already holds (Ritz), a moderate gap (inertia after subspace iteration) and
    # Gaussian matrices whose top singular values crowd (the exact fallback). Reference:
    # torch.linalg.svdvals in float64 of the same matrices, relative error on sigma_1^2.
    from gradtrace.core.spectral import certified_spectral

    gen = torch.Generator().manual_seed(3)
    n, R, r = 6, 60, 8
    U0, _ = torch.linalg.qr(torch.randn(R, R, generator=gen, dtype=DTYPE))
    V0, _ = torch.linalg.qr(torch.randn(R, R, generator=gen, dtype=DTYPE))
    spectra = [
        torch.cat([torch.tensor([10.0], dtype=DTYPE), torch.linspace(1, 0.1, R - 1, dtype=DTYPE)]),
        torch.linspace(2.0, 0.1, R, dtype=DTYPE),
    ]
    M = torch.stack([U0 @ torch.diag(s) @ V0.T for s in spectra for _ in range(n // 2)])
    crowded = torch.randn(n, R, R, generator=gen, dtype=DTYPE)
    M = torch.stack([M, crowded]).to(dtype)  # (2, n, R, R): N = 2 products of B = n rows
    U = U0[:, :r].to(dtype).expand(n, R, r).contiguous()
    lam, _ = certified_spectral(M, U.mT.unsqueeze(0) @ M, U)
    exact = torch.linalg.svdvals(M.to(DTYPE))[..., 0].pow(2)
    assert float(((lam - exact).abs() / exact).max()) <= tol


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_small_matrices_are_bracketed_by_squaring_or_solved_exactly(
    dtype: torch.dtype, tol: float
) -> None:
    # gram_spectral brackets lambda_1 of small Gram matrices with batched products alone
    # (a Rayleigh quotient below, tr(G^64)^(1/64) above) and solves the rest: well separated
    # top singular values, crowded ones (the exact fallback), equal ones and a zero matrix.
    # Reference: torch.linalg.svdvals in float64, relative error on sigma_1.
    import gradtrace.core.spectral as spectral

    gen = torch.Generator().manual_seed(9)
    n = 12
    U0, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DTYPE))
    V0, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DTYPE))
    spread = torch.logspace(0, -3, n, dtype=DTYPE)
    crowded = torch.linspace(1.0, 0.99, n, dtype=DTYPE)
    tied = torch.cat([torch.ones(2, dtype=DTYPE), torch.full((n - 2,), 0.5, dtype=DTYPE)])
    M = torch.stack([U0 @ torch.diag(s) @ V0.T for s in (spread, crowded, tied)])
    M = torch.cat([M, torch.zeros(1, n, n, dtype=DTYPE), torch.randn(40, n, n, dtype=DTYPE)])
    wide = torch.randn(5, 7, n, generator=gen, dtype=DTYPE)  # a 7 x 7 Gram matrix
    solved: list[int] = []
    exact = spectral.eigvalsh_psd

    def counted(G: torch.Tensor) -> torch.Tensor:
        solved.append(G.shape[0])
        return exact(G)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spectral, "eigvalsh_psd", counted)
        got = torch.cat([spectral.gram_spectral(A.to(dtype)).to(DTYPE) for A in (M, wide)])
    want = torch.cat([torch.linalg.svdvals(A.to(dtype).to(DTYPE))[..., 0] for A in (M, wide)])
    assert float(got[3]) == 0.0
    keep = want > 0
    assert float(((got - want).abs()[keep] / want[keep]).max()) <= tol
    assert 0 < sum(solved) < want.numel()  # the crowded ones solved exactly, most bracketed


def test_a_chunk_expected_to_settle_that_does_not_is_swept_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Gaussian steps (S = 64, swept step by step) settle the products after about 200 steps;
    # 300 steps in, where the ninth singular value is still about 1e-9 of the first, one step
    # shrinks the top eight right singular directions of the product so far (the whole
    # carried subspace) ten-thousandfold: the older products' mass outside it is no longer
    # negligible, the chunk expected to settle does not, and it is swept again storing its
    # products; later they settle again. (Later in the sweep the ninth is 1e-12 of the first:
    # the same step leaves the top subspace where it was, and the chunk rightly settles.)
    # Reference: the SVD of every explicit product, float64, 1e-10 relative on sigma_1.
    from gradtrace.core import engine

    outcomes: list[bool] = []
    first_try = engine.Sweep._settled_chunk

    def watched(self: engine.Sweep, begin: int, factors: Any, n: int) -> bool:
        outcomes.append(first_try(self, begin, factors, n))
        return outcomes[-1]

    monkeypatch.setattr(engine.Sweep, "_settled_chunk", watched)
    T, S, k0 = 900, 64, 600
    gen = torch.Generator().manual_seed(4)
    J = torch.randn(T, S, S, generator=gen, dtype=DTYPE) / math.sqrt(S)

    def shrink(k: int, P: torch.Tensor) -> None:
        if k == k0:
            V = torch.linalg.svd(P).Vh[:8].T  # (S, 8): the top right singular vectors
            J[k] = torch.eye(S, dtype=DTYPE) - (1 - 1e-4) * V @ V.T

    want = explicit_log10_sigma(J, shrink)
    got = contribution_curve(J, "spectral").log10_norm
    assert float((got - want).abs().max()) <= 1e-10 / math.log(10)
    assert True in outcomes and False in outcomes  # settled chunks, and one swept again


def test_settled_chunks_grow_while_they_settle() -> None:
    # A sweep that expects its next chunk to settle doubles its chunks past the usual length
    # (up to the longest a chunk of Jacobians may be) and falls back to it when a chunk does
    # not settle; the chunks cover 0..T once, newest first.
    from gradtrace.core.engine import _growing_chunks

    @dataclass
    class Expectation:
        expect_settled: bool = False

    sweep = Expectation()
    seen = []
    for begin, stop in _growing_chunks(2000, 4, 64, 512, sweep):  # type: ignore[arg-type]
        seen.append(stop - begin)
        sweep.expect_settled = len(seen) != 9  # the ninth chunk does not settle
    assert seen[:9] == [4, 8, 16, 32, 64, 128, 256, 512, 512]
    assert seen[9] == 64  # after the chunk that did not settle
    assert sum(seen) == 2000


def test_kato_temple_closes_a_bracket_before_the_trace_bound() -> None:
    # lambda_2 / lambda_1 = 0.1: after three squarings tr(G^8)^(1/8) is still 1e-9 above
    # lambda_1 (it would need all six), but the column of G^8 is the top eigenvector to 1e-8,
    # which Kato-Temple (a = sqrt(||G||_F^2 - rho^2) >= lambda_2) turns into a bound within
    # 1e-16: the bracket stops after three. Reference: torch.linalg.eigvalsh, float64.
    from gradtrace.core.spectral import bracket_top

    gen = torch.Generator().manual_seed(12)
    n = 12
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DTYPE))
    values = torch.cat([torch.tensor([1.0, 0.1], dtype=DTYPE), torch.full((n - 2,), 1e-3)])
    G = (Q @ torch.diag(values) @ Q.T).unsqueeze(0)
    squarings = 0
    bmm = torch.bmm

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal squarings
        squarings += 1
        return bmm(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "bmm", counted)
        rho, upper = bracket_top(G, 1e-12)
    exact = float(torch.linalg.eigvalsh(G)[0, -1])
    trace_bound = float(torch.linalg.matrix_power(G[0], 8).trace() ** (1 / 8))
    assert trace_bound > exact * (1 + 1e-10)  # the trace bound alone is not closed at G^8
    assert squarings == 3
    assert float(rho[0]) <= exact * (1 + 1e-15) and float(upper[0]) >= exact * (1 - 1e-15)
    assert float(upper[0]) <= float(rho[0]) * (1 + 1e-12)


@pytest.mark.parametrize("ratio", [1e-8, 1e-2, 0.5])
def test_staged_brackets_hold_the_top_eigenvalue_at_every_stage(ratio: float) -> None:
    # lambda_2 / lambda_1 = 1e-8 closes at the first read (G^2, no product), 1e-2 after three
    # squarings, 0.5 after six: each bracket holds the exact top eigenvalue (torch.linalg
    # .eigvalsh, float64; 1e-15 relative for rounding) and is within the 1e-12 asked.
    from gradtrace.core.spectral import bracket_top

    gen = torch.Generator().manual_seed(11)
    n = 12
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DTYPE))
    values = torch.cat([torch.tensor([2.0, 2.0 * ratio], dtype=DTYPE), torch.full((n - 2,), 1e-9)])
    G = torch.stack([Q @ torch.diag(values * (1 + 0.1 * i)) @ Q.T for i in range(5)])
    exact = torch.linalg.eigvalsh(G)[:, -1]
    rho, upper = bracket_top(G, 1e-12)
    assert bool((rho <= exact * (1 + 1e-15)).all() and (upper >= exact * (1 - 1e-15)).all())
    assert bool((upper <= rho * (1 + 1e-12)).all())


def test_the_first_bracket_alone_holds_and_the_open_ones_get_exact_eigenvalues() -> None:
    # squarings=False: one read before any squaring, no batched products beyond G x. Crowded
    # tops (lambda_2 / lambda_1 = 0.9) stay open but their brackets still hold lambda_1;
    # gram_spectral then gives every matrix its top singular value, equal to
    # torch.linalg.svdvals to 1e-12 relative (float64), the 16 x 16 matrices through eigvalsh.
    from gradtrace.core.spectral import LAPACK_SIZE, bracket_top, gram_spectral

    gen = torch.Generator().manual_seed(13)
    n = LAPACK_SIZE
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DTYPE))
    tops = ((1e-8, 1e-9), (0.9, 1e-3))  # lambda_2 and the rest: well separated, crowded
    values = [torch.tensor([1.0, a] + [b] * (n - 2), dtype=DTYPE) for a, b in tops]
    G = torch.stack([Q @ torch.diag(v) @ Q.T for v in values] + [torch.zeros(n, n, dtype=DTYPE)])
    exact = torch.linalg.eigvalsh(G)[:, -1]
    rho, upper = bracket_top(G, 1e-12, squarings=False)
    assert bool((rho <= exact * (1 + 1e-15)).all() and (upper >= exact * (1 - 1e-15)).all())
    closed = upper <= rho * (1 + 1e-12)
    assert closed.tolist() == [True, False, True]  # G = 0 gives 0, 0
    assert float(upper[2]) == 0.0
    crowded = torch.linalg.matrix_power(G[1], 3)  # singular values 1, 0.73, 1e-9, ...
    M = torch.cat([torch.randn(40, n, n, generator=gen, dtype=DTYPE) @ crowded, G])
    sigma = gram_spectral(M)
    reference = torch.linalg.svdvals(M)[:, 0]
    assert bool(((sigma - reference).abs() <= 1e-12 * reference).all())  # G = 0 gives 0
