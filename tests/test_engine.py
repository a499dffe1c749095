"""Tests for gradtrace.core.engine: c(k) = metric(J_T ... J_{k+1}) and the loss-gradient sweep.

References, all float64:
- explicit products P_k = J_T ... J_{k+1}, multiplied out step by step with no renormalisation
  (the problems are sized so they stay in range), with each metric taken by torch.linalg
  (svdvals for spectral) or written out (frobenius, maxabs): 1e-10 absolute in log10, i.e.
  about 2e-10 relative in c(k);
- torch.autograd: ds_T/ds_k of the unrolled cells (their step Jacobians from
  `gradtrace.cells.replay`) and dL/dh_k of a loss through an unrolled RNN
  (1e-10 in log10; vectors 1e-10 relative to the largest entry);
- for 100,000 steps, J_t = a_t Q_t with Q_t orthogonal, so ||J_T ... J_{k+1}||_2 = prod_{t>k} a_t
  exactly and log10 c(k) is a float64 cumulative sum of log10 a_t;
- the budget's estimate `sweep_work` against the bytes of the Jacobians it sweeps and one
  S x S x S product per step.

Both regimes of the internal block scan are exercised: 32-step blocks for small states (S = 3,
or S = 40 with B = 1) and plain sequential steps for large ones (S = 40 with B = 20), with T not
a multiple of 32 as well as T = 1 and T beyond one flush of 256 stored products.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import jacobian as autograd_jacobian

from gradtrace.cells import GRUWeights, LSTMWeights, RNNWeights, get_cell, replay
from gradtrace.core.activations import ACTIVATIONS
from gradtrace.core.engine import (
    METRICS,
    block_size,
    contribution_curve,
    diagonal_curve,
    suffix_sum,
    sweep_work,
)
from gradtrace.core.gradient_profile import loss_gradient_profile
from gradtrace.core.products import into_basis_of, times_thin
from gradtrace.errors import GradtraceError

DTYPE = torch.float64
LOG10_ATOL = 1e-10

REFERENCE_METRICS: dict[str, Callable[[Tensor], Tensor]] = {
    "spectral": lambda P: torch.linalg.svdvals(P)[..., 0],
    "frobenius": lambda P: P.pow(2).sum(dim=(-2, -1)).sqrt(),
    "maxabs": lambda P: P.abs().amax(dim=(-2, -1)),
}


def gaussian_jacobians(T: int, B: int | None, S: int, seed: int, scale: float = 0.9) -> Tensor:
    """(T, S, S) or (T, B, S, S) with N(0, scale^2 / S) entries: products shrink gently."""
    gen = torch.Generator().manual_seed(seed)
    shape = (T, S, S) if B is None else (T, B, S, S)
    return torch.randn(*shape, generator=gen, dtype=DTYPE) * (scale / math.sqrt(S))


def explicit_products(J: Tensor) -> Tensor:
    """P_k = J_T ... J_{k+1} for k = 0..T-1, multiplied out without any rescaling."""
    T = J.shape[0]
    products = [J[T - 1]]  # P_{T-1} = J_T, stored in row T-1
    for k in range(T - 2, -1, -1):
        products.append(products[-1] @ J[k])  # P_k = P_{k+1} J_{k+1}
    return torch.stack(products[::-1])  # (T, ..., S, S)


# ---------------------------------------------------------------- 1. explicit products

# (T, B or None, S, rows, cols, the block size the engine must pick)
PRODUCT_PROBLEMS = [
    pytest.param(70, None, 3, None, None, 32, id="S3-T70"),
    pytest.param(64, 2, 3, None, None, 32, id="S3-T64-B2"),
    pytest.param(1, None, 3, None, None, 32, id="S3-T1"),
    pytest.param(300, 2, 3, None, None, 32, id="S3-T300-B2-two-flushes"),
    pytest.param(70, None, 3, slice(0, 2), slice(1, 3), 32, id="S3-T70-rows0:2-cols1:3"),
    pytest.param(50, None, 40, None, None, 32, id="S40-T50"),
    pytest.param(33, 20, 40, None, None, 1, id="S40-T33-B20-sequential"),
    pytest.param(33, 20, 40, slice(0, 20), slice(0, 20), 1, id="S40-T33-B20-block0:20"),
    pytest.param(45, 20, 40, None, slice(20, 40), 1, id="S40-T45-B20-cols20:40"),
]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("T", "B", "S", "rows", "cols", "block"), PRODUCT_PROBLEMS)
def test_curve_equals_explicit_products(
    T: int, B: int | None, S: int, rows: slice | None, cols: slice | None, block: int, metric: str
) -> None:
    assert block_size(B or 1, S) == block  # the regime this problem is meant to exercise
    J = gaussian_jacobians(T, B, S, seed=T + S)
    P = explicit_products(J)[..., rows or slice(None), cols or slice(None)]
    expected = torch.log10(REFERENCE_METRICS[metric](P))  # (T,) or (T, B)
    curve = contribution_curve(J, metric, rows=rows, cols=cols)
    assert curve.metric == metric
    assert curve.steps == T
    assert torch.equal(curve.k, torch.arange(T))
    assert curve.log10_norm.dtype == DTYPE
    if B is None:
        assert curve.log10_norm.shape == (T,)
        torch.testing.assert_close(curve.log10_norm, expected, atol=LOG10_ATOL, rtol=0)
    else:
        assert curve.log10_norm.shape == (B, T)
        torch.testing.assert_close(curve.log10_norm, expected.T, atol=LOG10_ATOL, rtol=0)


def test_scalar_docstring_example_is_a_closed_form() -> None:
    J = torch.full((50, 1, 1), 0.9, dtype=DTYPE)
    expected = torch.arange(50, 0, -1, dtype=DTYPE) * math.log10(0.9)  # 0.9^(T-k)
    torch.testing.assert_close(contribution_curve(J).log10_norm, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("metric", METRICS)
def test_an_exactly_zero_step_gives_minus_infinity_before_it(metric: str) -> None:
    J = gaussian_jacobians(40, None, 3, seed=5)
    J[24] = 0.0  # J_25 = 0, so ds_T/ds_k = 0 for every k < 25
    log10 = contribution_curve(J, metric).log10_norm
    assert bool((log10[:25] == -math.inf).all())
    expected = torch.log10(REFERENCE_METRICS[metric](explicit_products(J[25:])))
    torch.testing.assert_close(log10[25:], expected, atol=LOG10_ATOL, rtol=0)


def _two_rotations(T: int, a: float, dtype: torch.dtype) -> Tensor:
    """J_t = blockdiag(a R, R) with R a rotation: the top-left block of the product is a^n R^n."""
    angle = torch.tensor(0.3, dtype=DTYPE)
    R = torch.stack(
        [torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])]
    )
    J = torch.zeros(T, 4, 4, dtype=DTYPE)
    J[:, :2, :2], J[:, 2:, 2:] = a * R, R
    return J.to(dtype)


@pytest.mark.parametrize("metric", ["spectral", "frobenius"])
@pytest.mark.parametrize(
    ("dtype", "T"), [(torch.float32, 100), (torch.float64, 600)], ids=["float32", "float64"]
)
def test_a_small_block_of_a_large_product_stays_finite(
    dtype: torch.dtype, T: int, metric: str
) -> None:
    # The measured block (an LSTM's h rows, say) is 0.5^(T-k) while the carried product keeps
    # entries of size 1 in the other block: 1e-30 (float32) and 1e-180 (float64) at k = 0,
    # both representable, but their squares are not.
    J = _two_rotations(T, 0.5, dtype)
    block = slice(0, 2)
    log10 = contribution_curve(J, metric, rows=block, cols=block).log10_norm
    slack = 0.5 * math.log10(2) if metric == "frobenius" else 0.0  # ||a^n R^n||_F = sqrt(2) a^n
    expected = torch.arange(T, 0, -1, dtype=DTYPE) * math.log10(0.5) + slack
    atol = 3 * T * torch.finfo(dtype).eps  # a few roundings per step
    torch.testing.assert_close(log10, expected, atol=atol, rtol=0)


def _scaled_orthogonal(T: int, B: int, S: int, factors: Tensor) -> tuple[Tensor, Tensor]:
    """J_t = c_t Q_t (T, B, S, S) with random orthogonal Q_t, and the products of the Q_t alone
    (T, B, S, S): P_k = (c_{k+1} ... c_T) (Q_T ... Q_{k+1}), an orthogonal matrix times a
    known scale."""
    gen = torch.Generator().manual_seed(T + S)
    Q, _ = torch.linalg.qr(torch.randn(T, B, S, S, generator=gen, dtype=DTYPE))
    return factors.view(T, 1, 1, 1) * Q, explicit_products(Q)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("B", [1, 2])
def test_steps_measured_in_groups_rescale_redo_and_reach_zero_as_one_at_a_time(
    B: int, metric: str
) -> None:
    # S = 64: the sequential regime, whose small products are measured 8 (B = 1) or 4 (B = 2)
    # steps at a time. Factors of 0.3 take the product across 2^-200 every ~115 steps (a
    # group rescales its last product); single steps of 1e250 and 1e-250 overflow or
    # underflow within a group (it is made again a step at a time; the spectral sweep's
    # Frobenius norms of such products, whose squares leave float64, come from the product
    # divided by its largest entry); an exactly zero step gives -inf before it. Reference:
    # log10 of the known scale plus the metric of the orthogonal product, multiplied out
    # plainly (float64; 1e-10 decades).
    T, S = 400, 64
    c = torch.full((T,), 0.3, dtype=DTYPE)
    c[[350, 351, 200]] = torch.tensor([1e250, 1e250, 1e-250], dtype=DTYPE)
    c[20] = 0.0  # J_21 = 0
    J, Q = _scaled_orthogonal(T, B, S, c)
    log10 = contribution_curve(J, metric).log10_norm  # (B, T)
    scale = suffix_sum(torch.log10(c[21:]))  # log10 c_{k+1} ... c_T for k >= 21
    expected = scale.unsqueeze(-1) + torch.log10(REFERENCE_METRICS[metric](Q[21:]))
    assert bool((log10[:, :21] == -math.inf).all())
    torch.testing.assert_close(log10[:, 21:], expected.T, atol=1e-10, rtol=0)
    assert float(expected.max() - expected.min()) > 400  # far beyond [2^-200, 2^200]


@pytest.mark.parametrize(("T", "B", "S"), [(70, 1, 3), (33, 2, 40)], ids=["blocks", "sequential"])
def test_sweep_work_covers_the_jacobians_and_one_product_per_step(T: int, B: int, S: int) -> None:
    # The budget's estimate must not be below what the sweep certainly holds and does: the
    # (T, B, S, S) Jacobians themselves and one S x S x S product (2 S^3 flops) per step.
    J = gaussian_jacobians(T, B, S, seed=1)
    held = J.numel() * J.element_size()
    for metric in METRICS:
        work = sweep_work(T, B, S, metric)
        assert work.memory >= held
        assert work.flops >= 2 * T * B * S**3
        assert work.steps >= T / block_size(B, S)
    assert sweep_work(T, B, S, "spectral").flops > sweep_work(T, B, S, "frobenius").flops
    assert sweep_work(T, B, S, "spectral", itemsize=4).memory >= held / 2  # float32


@pytest.mark.parametrize(
    ("M_shape", "X_shape"),
    [((7, 40, 30), (7, 30, 3)), ((30, 30), (5, 30, 2)), ((4, 40, 30), (30, 1))],
    ids=["batched", "shared-left", "shared-right"],
)
def test_thin_products_equal_matmul(M_shape: tuple[int, ...], X_shape: tuple[int, ...]) -> None:
    # (X^T M^T)^T is M X in another layout; float64, torch.matmul as the reference, 1e-13.
    gen = torch.Generator().manual_seed(3)
    M = torch.randn(*M_shape, generator=gen, dtype=DTYPE)
    X = torch.randn(*X_shape, generator=gen, dtype=DTYPE)
    torch.testing.assert_close(times_thin(M, X), M @ X, atol=1e-13, rtol=0)


@pytest.mark.parametrize("case", ["random", "already-first"])
def test_a_change_of_basis_puts_the_given_span_first(case: str) -> None:
    # Q^T P in block-reflector form against the complete QR's Q formed explicitly
    # (torch.linalg.qr, mode="complete"): the same rows up to sign, so the same singular
    # values and the first r rows spanning V^T P's row space; columns of V that already are
    # the first coordinate vectors (reflections that are the identity) leave P as it is.
    # float64, 1e-13.
    gen = torch.Generator().manual_seed(5)
    B, R, C, r = 3, 40, 30, 5
    P = torch.randn(B, R, C, generator=gen, dtype=DTYPE)
    if case == "random":
        V = torch.linalg.qr(torch.randn(B, R, r, generator=gen, dtype=DTYPE))[0]
    else:
        V = torch.eye(R, r, dtype=DTYPE).expand(B, R, r)
    got = into_basis_of(V, P)
    Q = torch.linalg.qr(V, mode="complete")[0]
    torch.testing.assert_close(got.abs(), (Q.mT @ P).abs(), atol=1e-13, rtol=0)
    torch.testing.assert_close(got[:, :r].mT @ got[:, :r], P.mT @ V @ V.mT @ P, atol=1e-13, rtol=0)
    if case == "already-first":
        torch.testing.assert_close(got, P, atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("metric", METRICS)
def test_curve_on_cuda_equals_cpu(metric: str) -> None:
    J = gaussian_jacobians(70, 2, 40, seed=1)
    cpu = contribution_curve(J, metric).log10_norm
    gpu = contribution_curve(J.cuda(), metric).log10_norm
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=LOG10_ATOL, rtol=0)


# ---------------------------------------------------------------- 2. trajectories vs autograd

H, IN, T_SHORT, BATCH = 4, 3, 8, 2


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(*shape, generator=gen, dtype=DTYPE)


def rnn(activation: str) -> RNNWeights:
    gen = torch.Generator().manual_seed(1)
    return RNNWeights(
        _randn(gen, H, H, scale=1.5 / H**0.5), _randn(gen, H, IN), _randn(gen, H), activation
    )


def lstm() -> LSTMWeights:
    gen = torch.Generator().manual_seed(2)
    return LSTMWeights(_randn(gen, 4 * H, IN), _randn(gen, 4 * H, H), _randn(gen, 4 * H))


def gru() -> GRUWeights:
    gen = torch.Generator().manual_seed(3)
    return GRUWeights(
        _randn(gen, 3 * H, IN), _randn(gen, 3 * H, H), _randn(gen, 3 * H), _randn(gen, 3 * H)
    )


# (cell, weights factory, measured block: the h rows and columns of an LSTM's (h, c) state)
TRAJECTORY_PROBLEMS = [
    *(pytest.param("rnn", lambda a=a: rnn(a), None, id=f"rnn-{a}") for a in ACTIVATIONS),
    pytest.param("lstm", lstm, slice(0, H), id="lstm-h-block"),
    pytest.param("gru", gru, None, id="gru"),
]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("name", "make_weights", "block"), TRAJECTORY_PROBLEMS)
def test_trajectory_curve_equals_autograd(
    name: str, make_weights: Callable[[], object], block: slice | None, metric: str
) -> None:
    cell, w = get_cell(name), make_weights()
    S = cell.state_size(w)
    gen = torch.Generator().manual_seed(11)
    x, s0 = _randn(gen, T_SHORT, BATCH, IN), _randn(gen, BATCH, S, scale=0.5)
    run = replay(cell, w, x, s0)
    states, jacobians = run.states, run.jacobians()  # (T+1, B, S), (T, B, S, S)
    curve = contribution_curve(jacobians, metric, rows=block, cols=block).log10_norm  # (B, T)
    for b in range(BATCH):
        for k in range(T_SHORT):

            def unrolled(s_k: Tensor, k: int = k, b: int = b) -> Tensor:
                s = s_k.unsqueeze(0)  # (1, S)
                for t in range(k, T_SHORT):
                    s = cell.step(w, x[t, b : b + 1], s)
                return s[0]

            dsT_dsk = autograd_jacobian(unrolled, states[k, b])  # (S, S)
            measured = dsT_dsk[block or slice(None), block or slice(None)]
            expected = math.log10(float(REFERENCE_METRICS[metric](measured)))
            assert abs(float(curve[b, k]) - expected) <= LOG10_ATOL, (b, k)


# ---------------------------------------------------------------- 3. loss-gradient profile

# (T, B or None, S): both block regimes, T not a multiple of 32
PROFILE_PROBLEMS = [
    pytest.param(45, None, 5, id="S5-T45"),
    pytest.param(45, 2, 5, id="S5-T45-B2"),
    pytest.param(37, 20, 40, id="S40-T37-B20-sequential"),
]


@pytest.mark.parametrize(("T", "B", "S"), PROFILE_PROBLEMS)
def test_loss_gradient_profile_equals_autograd_through_an_rnn(
    T: int, B: int | None, S: int
) -> None:
    gen = torch.Generator().manual_seed(S)
    w = RNNWeights(_randn(gen, S, S, scale=1.1 / S**0.5), _randn(gen, S, IN), _randn(gen, S))
    batch = B or 1
    x, target = _randn(gen, T, batch, IN), _randn(gen, batch, S)
    h = _randn(gen, batch, S, scale=0.5).requires_grad_(True)
    states = [h]
    for t in range(T):
        states.append(get_cell("rnn").step(w, x[t], states[-1]))
        states[-1].retain_grad()
    loss = 0.5 * (states[-1] - target).pow(2).sum()  # L = 1/2 sum_b ||h_T - t_b||^2
    loss.backward()
    expected = torch.stack([s.grad for s in states])  # (T+1, B, S): dL/dh_k
    with torch.no_grad():
        J = replay(get_cell("rnn"), w, x, h.detach()).jacobians()  # (T, B, S, S)
        grad_last = states[-1].detach() - target  # dL/dh_T
    if B is None:
        J, grad_last, expected = J[:, 0], grad_last[0], expected[:, 0]
    profile = loss_gradient_profile(J, grad_last, return_vectors=True)
    assert profile.vectors is not None
    assert profile.vectors.shape == expected.shape
    scale = float(expected.abs().max())
    torch.testing.assert_close(profile.vectors, expected, atol=1e-10 * scale, rtol=1e-10)
    log10_expected = torch.log10(torch.linalg.vector_norm(expected, dim=-1))  # (T+1,) | (T+1, B)
    log10_expected = log10_expected if B is None else log10_expected.T
    torch.testing.assert_close(profile.log10_norm, log10_expected, atol=LOG10_ATOL, rtol=0)


@pytest.mark.parametrize(("T", "B", "S"), PROFILE_PROBLEMS)
def test_loss_gradient_profile_equals_explicit_transposed_products(
    T: int, B: int | None, S: int
) -> None:
    J = gaussian_jacobians(T, B, S, seed=3)
    gen = torch.Generator().manual_seed(4)
    g_T = _randn(gen, S) if B is None else _randn(gen, B, S)
    P = explicit_products(J)  # (T, [B,] S, S)
    g = torch.einsum("...ij,...i->...j", P, g_T.expand(P.shape[:-1]))  # g_k = P_k^T g_T
    expected = torch.cat([g, g_T.unsqueeze(0)])  # k = 0..T
    profile = loss_gradient_profile(J, g_T)
    assert profile.vectors is None
    log10 = torch.log10(torch.linalg.vector_norm(expected, dim=-1))
    torch.testing.assert_close(
        profile.log10_norm, log10 if B is None else log10.T, atol=LOG10_ATOL, rtol=0
    )


def test_a_loss_gradient_of_1e_minus_200_is_measured_at_every_step() -> None:
    # dL/ds_T of 1e-200 (its squares underflow float64) through 40 steps: every log10 norm
    # is finite, the last the given gradient's own (closed form), the others the explicit
    # transposed products' scaled by 1e200 first (1e-10 decades).
    J = gaussian_jacobians(40, None, 64, seed=9)
    g_T = torch.full((64,), 1e-200, dtype=DTYPE)
    profile = loss_gradient_profile(J, g_T)
    g = torch.einsum("kij,i->kj", explicit_products(J), g_T * 1e200)  # (T, S)
    expected = torch.log10(torch.linalg.vector_norm(g, dim=-1)) - 200
    assert float(profile.log10_norm[-1]) == pytest.approx(-200 + 0.5 * math.log10(64), abs=1e-12)
    torch.testing.assert_close(profile.log10_norm[:-1], expected, atol=1e-10, rtol=0)


# ---------------------------------------------------------------- 4. 100,000 steps

LONG_T, LONG_S, ROTATIONS = 100_000, 4, 16
F32_EPS = torch.finfo(torch.float32).eps


def rotation_product(centre: float) -> tuple[Tensor, Tensor, Tensor]:
    """J_t = a_t Q_t with 16 Haar rotations cycled, a_t = centre * exp(0.01 N(0, 1)).

    Returns J (T, 4, 4) float64, a (T,) = ||J_t||_2, and the exact log10 c(k) =
    sum_{t>k} log10 a_t (a float64 cumulative sum in log space), since every product of
    rotations has all singular values 1.
    """
    gen = torch.Generator().manual_seed(0)
    Q, R = torch.linalg.qr(torch.randn(ROTATIONS, LONG_S, LONG_S, generator=gen, dtype=DTYPE))
    Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
    a = centre * torch.exp(0.01 * torch.randn(LONG_T, generator=gen, dtype=DTYPE))
    J = a[:, None, None] * Q[torch.arange(LONG_T) % ROTATIONS]  # (T, 4, 4)
    log10_a = torch.log10(a)
    reference = torch.flip(torch.cumsum(torch.flip(log10_a, [0]), 0), [0])  # k = 0..T-1
    return J, a, reference


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(
    ("centre", "overflow"), [(0.97, 0.0), (1.03, math.inf)], ids=["vanishing", "exploding"]
)
def test_hundred_thousand_steps_stay_finite_and_exact(
    centre: float, overflow: float, dtype: torch.dtype
) -> None:
    J, a, reference = rotation_product(centre)
    # The test means something: multiplied out plainly, float64 under- or overflows.
    assert float(torch.prod(a)) == overflow
    assert abs(float(reference[0])) > 1000  # |log10 c(0)| ~ 1300, far beyond 1e+-308

    log10 = contribution_curve(J.to(dtype), "spectral").log10_norm

    assert log10.shape == (LONG_T,)
    assert bool(torch.isfinite(log10).all())
    if dtype == torch.float64:
        # Each step adds one rounding of order 1e-16 to the log; after 1e5 steps the absolute
        # error is ~1e-11 against |log10 c(k)| up to 1300: 1e-9 relative is generous.
        torch.testing.assert_close(log10, reference, rtol=1e-9, atol=1e-12)
    else:
        # Worst case per step in float32: rounding the Jacobian (eps/2), a 4x4 product
        # (4 eps) and the renormalisation (eps/2), about 5 eps relative, i.e. 5 eps / ln 10
        # ~ 2.2 eps in log10. So |error(k)| <= 3 eps (T - k) decades, 0.036 at k = 0 against
        # |log10 c(0)| ~ 1300 (3e-5 relative); measured errors are far smaller (~1e-5).
        bound = 3 * F32_EPS * torch.arange(LONG_T, 0, -1, dtype=DTYPE)  # T - k
        assert bool(((log10 - reference).abs() <= bound).all())


# ---------------------------------------------------------------- 5. bad input

BAD_INPUTS = [
    pytest.param(
        lambda: contribution_curve(torch.ones(5, 3, dtype=DTYPE)),
        r"`jacobians` must have shape \(T, S, S\) or \(T, B, S, S\), got shape \(5, 3\)",
        id="two-dims",
    ),
    pytest.param(
        lambda: contribution_curve(torch.ones(5, 3, 2, dtype=DTYPE)),
        r"`jacobians` must hold square S x S matrices",
        id="not-square",
    ),
    pytest.param(
        lambda: contribution_curve(torch.ones(0, 3, 3, dtype=DTYPE)),
        r"at least one step \(T >= 1\), got T = 0",
        id="T-0",
    ),
    pytest.param(
        lambda: contribution_curve(torch.ones(5, 3, 3, dtype=torch.int64)),
        r"`jacobians` must be a floating-point tensor",
        id="integer",
    ),
    pytest.param(
        lambda: contribution_curve(torch.full((5, 3, 3), math.nan, dtype=DTYPE)),
        r"`jacobians` must be finite, got 45 NaN/Inf entries",
        id="nan",
    ),
    pytest.param(
        lambda: contribution_curve(torch.ones(5, 3, 3, dtype=DTYPE), "nuclear"),
        r"`metric` must be one of spectral, frobenius, maxabs, got 'nuclear'",
        id="unknown-metric",
    ),
    pytest.param(
        lambda: loss_gradient_profile(torch.ones(5, 2, 3, 3, dtype=DTYPE), torch.ones(3)),
        r"`grad_last` must have shape \(2, 3\) to match the Jacobians, got \(3,\)",
        id="grad-last-shape",
    ),
    pytest.param(
        lambda: loss_gradient_profile(
            torch.ones(5, 3, 3, dtype=DTYPE), torch.tensor([1.0, math.inf, 0.0], dtype=DTYPE)
        ),
        r"`grad_last` must be finite, got 1 NaN/Inf entries",
        id="grad-last-inf",
    ),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(call: Callable[[], object], match: str) -> None:
    with pytest.raises(GradtraceError, match=match):
        call()


@pytest.mark.parametrize("metric", ["spectral", "frobenius", "maxabs"])
@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
def test_diagonal_curve_equals_the_dense_engine(metric: str, batched: bool) -> None:
    # The O(T S) path for diag(d_t) against the general O(T S^3) sweep on diag_embed (1e-10).
    shape = (40, 3, 5) if batched else (40, 5)
    d = torch.randn(*shape, generator=torch.Generator().manual_seed(7), dtype=DTYPE)
    dense = contribution_curve(torch.diag_embed(d), metric).log10_norm
    fast = diagonal_curve(d, metric).log10_norm
    torch.testing.assert_close(fast, dense, atol=1e-10, rtol=0)


@pytest.mark.parametrize("second", [0.0, 1e-3], ids=["zero", "tiny"])
def test_gradient_vectors_are_inf_or_zero_never_nan_under_a_huge_scale(second: float) -> None:
    # Regression: the vectors were direction * exp(scale), which gave 0 * inf = NaN in float32.
    J = torch.diag(torch.tensor([10.0, second])).expand(40, 2, 2).to(torch.float32)
    vectors = loss_gradient_profile(J, torch.ones(2), return_vectors=True).vectors
    assert vectors is not None
    assert not bool(torch.isnan(vectors).any())
    assert float(vectors[0, 0]) == math.inf  # 10^40 overflows float32
    assert float(vectors[0, 1]) == 0.0  # second^40 underflows (or is 0)
    assert float(vectors[39, 1]) == pytest.approx(second)  # one step back: exact
