"""The engine: products of step Jacobians for every k in one backward sweep, in log scale.

Given step Jacobians J_1..J_T of any recurrence s_t = F(s_{t-1}, x_t), with J_t = ds_t/ds_{t-1},
the chain rule gives

    ds_T/ds_k = J_T J_{T-1} ... J_{k+1}            (k = 0..T-1)

and the contribution curve is c(k) = metric(ds_T/ds_k). The sweep keeps P_k = ds_T/ds_k and
extends it by one right-multiplication per step, P_{k-1} = P_k J_k, so all T products cost
O(T S^3) rather than O(T^2 S^3). When only some rows of the product are measured (the h rows of
an LSTM's (h, c) state) only those R rows are carried: P_k[rows] J_k = (P_k J_k)[rows].

Streaming: the Jacobians come from a source a chunk of steps at a time (`gradtrace.core
.factors`), newest first, and are dropped after use; memory is one chunk plus the carried
product, whatever T is.

Numerics: after every step each product is divided by its largest absolute entry and the
logarithm of that factor is added to a float64 running scale, so stored entries stay in
[-1, 1] and log10 c(k) = scale_k / ln 10 + log10 metric(P_k / scale). Products of 100,000 steps
neither underflow nor overflow, in float32 or float64. The precision of log10 c(k) is that of
one matrix product in the Jacobians' dtype (about 1e-6 relative per step in float32, 1e-15 in
float64), accumulated additively over the steps; an exactly zero product gives -inf.

Two regimes, by the entries of one step's Jacobians, B S^2:

    sequential   (at least `SCAN_WORK`) one batched product per step into a preallocated
                 buffer and one reduction for its largest entry (for small products one
                 reduction per `GROUP` steps); on the CPU the product is rescaled only when
                 that entry leaves [2^-200, 2^200] ([2^-20, 2^20] in float32), so nothing
                 else touches it
    blocked      (below it) Python's per-step overhead would dominate: the steps of a chunk
                 are grouped into blocks of `BLOCK` steps whose suffix products X_m ... X_i
                 are built for all blocks at once (one batched product per position in the
                 block), then the carried product meets each block in one wide product
                 P (S x S) [R_{m-1} | ... | R_0] (S x m S). That is about twice the
                 arithmetic in about 2 sqrt(T) Python steps instead of T, and a wide product
                 runs at up to twice the rate of a small square one.

The loss-gradient profile (`gradtrace.core.gradient_profile`) is the same sweep applied to a
vector, g_{k-1} = J_k^T g_k with g_T = dL/ds_T.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gradtrace.budgets import Work
from gradtrace.core.factors import (
    CHUNK_BYTES,
    Factors,
    StepSource,
    as_source,
    check_jacobians,
    chunk_steps,
    chunks_backward,
)
from gradtrace.core.products import into_basis_of
from gradtrace.core.spectral import (
    METRICS,
    certified_spectral,
    check_metric,
    matrix_metric,
    matrix_values,
    settled,
    top_subspace,
)
from gradtrace.errors import check

__all__ = [
    "METRICS",
    "ContributionCurve",
    "Sweep",
    "block_size",
    "block_suffix",
    "check_jacobians",
    "check_metric",
    "contribution_curve",
    "diagonal_curve",
    "matrix_metric",
    "refuse_non_finite",
    "suffix_sum",
    "sweep_work",
]

SCAN_WORK = 2**12  # entries of one step's Jacobians below which steps are combined in blocks
BLOCK = 32  # steps per block in the blocked regime
GROUP = 8  # steps whose products the CPU path measures in one call, when they are small:
GROUP_BYTES = 2**18  # at most this many bytes of them, so that they are still in cache
SUBSPACE = 16  # dimension of the spectral norm's Rayleigh-Ritz subspace (see core.spectral)
SUBSPACE_SHARE = 8  # one dimension of it per this many measured rows, up to SUBSPACE
CARRY_CHUNK = 64  # steps between refreshes of the carried subspace
FIRST_CHUNK = 4  # steps of the first chunk with a carried subspace (they double from there)
_LN10 = math.log(10.0)


@dataclass(frozen=True)
class ContributionCurve:
    """log10 c(k) = log10 metric(ds_T/ds_k) for k = 0..T-1.

    Attributes:
        log10_norm: (T,) for unbatched Jacobians, (B, T) for batched ones; float64.
        metric: one of `METRICS`.
    """

    log10_norm: Tensor
    metric: str

    @property
    def steps(self) -> int:
        return int(self.log10_norm.shape[-1])

    @property
    def k(self) -> Tensor:
        """The start steps k = 0..T-1, aligned with the last axis of `log10_norm`."""
        return torch.arange(self.steps)


def suffix_sum(values: Tensor) -> Tensor:
    """Reverse cumulative sum along dim 0: out[k] = values[k] + values[k+1] + ... + values[T-1].

    For per-step logs l_1..l_T stored at rows 0..T-1 this gives row k = l_{k+1} + ... + l_T,
    the log of the product J_T ... J_{k+1} when each l_t is the log of a factor of J_t.
    """
    return torch.flip(torch.cumsum(torch.flip(values, [0]), 0), [0])


def refuse_non_finite(result: Tensor, name: str = "jacobians") -> None:
    """Raise if `result` shows what only non-finite Jacobians produce (NaN or +inf).

    With finite Jacobians every renormalised quantity is finite, or -inf for an exactly zero
    product, so a NaN or +inf in the result means a NaN or Inf entry went in.
    """
    check(
        not bool(torch.isnan(result).any() or (result == math.inf).any()),
        f"`{name}` must be finite, got NaN/Inf entries",
    )


def block_size(batch: int, size: int) -> int:
    """Steps combined per block: `BLOCK` while one step's (B, S, S) Jacobians are small, else 1.

    The blocked regime makes several passes over a chunk's Jacobians (its block products are
    as large), which pays only while they stay in cache and Python's per-step overhead would
    dominate: B S^2 below `SCAN_WORK` entries.
    """
    return BLOCK if batch * size**2 < SCAN_WORK else 1


def sweep_work(steps: int, batch: int, size: int, metric: str, itemsize: int = 8) -> Work:
    """The estimated cost of `contribution_curve` over (T, B, S, S) Jacobians, for budgets.

    One chunk of Jacobians and its block products, one product per step (twice that in the
    blocked regime), and the spectral metric's power iterations.
    """
    T, B, S = steps, batch, size
    blocked = block_size(B, S) > 1
    flops = 2.0 * T * B * S**3 * (2 if blocked else 1) + 20.0 * T * B * S * S
    if metric == "spectral":  # one Rayleigh quotient per product
        flops += 4.0 * T * B * S * S
    chunk = min(T, max(1, CHUNK_BYTES // max(1, B * S * S * itemsize)))
    memory = itemsize * B * S * S * (3.0 * chunk + 4)
    return Work(memory=memory, flops=flops, steps=T / (BLOCK if blocked else 1) + T / chunk)


def _normalise(products: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Divide each product by its largest |entry| in place; return that entry (keepdim)."""
    peak = products.abs().amax(dim=dims, keepdim=True)  # zeros where the product is 0
    products.div_(peak.clamp_min(torch.finfo(products.dtype).tiny))
    return peak


@dataclass(eq=False)
class Sweep:
    """A backward sweep over step Jacobians: P_{k-1} = P_k J_k from a start P_T (B, R, S).

    `run()` fills `log_c` (T, B), the natural log of metric(P_k[:, cols]) for k = 0..T-1; with
    `keep` it also fills `products` (T, B, R, S) and `scales` (T, B), every normalised P_k
    and its log scale (P_k = exp(scale) * product). `start` of identity rows measures the
    contribution curve; a row dL/ds_T gives the loss-gradient profile.
    """

    source: StepSource
    start: Tensor
    metric: str = "spectral"
    cols: slice | None = None
    keep: bool = False
    identity_rows: bool = False

    def run(self) -> Sweep:
        src = self.source
        T, B = src.steps, src.batch
        device = src.device
        self.P = self.start.to(dtype=src.dtype, device=device).clone()  # (B, R, S)
        self.rows = self.P.shape[1]
        # The certificate of the spectral norm (see core.spectral) needs Y = U^T P for an
        # r-dimensional subspace U of the row space, refined once per chunk. The product is
        # carried in an orthonormal basis [U, U_perp] of that space (P := Q^T P has the same
        # singular values and norms), so Y is its first r rows and costs nothing a step; unless
        # the products are small enough that exact eigenvalues cost less.
        self.carry = self.metric == "spectral" and self.rows > 4 * SUBSPACE // 2 and not self.keep
        if self.carry:
            self.r = min(SUBSPACE, self.rows // SUBSPACE_SHARE)
            eye = torch.eye(self.rows, self.r, dtype=src.dtype, device=device)
            self.U = eye.expand(B, self.rows, self.r)  # (B, R, r): U in the carried basis
        # With a carried subspace the CPU sweep measures each product by its Frobenius norm
        # rather than its largest entry: one pass either way (the norm's is the faster), and
        # the certificate needs ||P_k||_F^2.
        self.frobenius_peaks = self.carry and self.cols is None and device.type == "cpu"
        # Once a chunk's products were all settled by the carried subspace alone, the next
        # chunk's (longer) products are expected to be too: they are then not stored, only
        # their first r rows, and the chunk is swept again, storing them, if one is not.
        self.expect_settled = False
        self.Q = torch.empty_like(self.P)  # the GPU path's second buffer
        self._kept: Tensor | None = None
        self._ring: Tensor | None = None  # the CPU path's buffers (`_rings`)
        self._ring_slots: tuple[tuple[Tensor, tuple[Tensor, ...]], ...] = ()
        self._turn = 0
        self.scale = torch.zeros(B, dtype=torch.float64, device=device)
        self.log_c = torch.empty(T, B, dtype=torch.float64, device=device)
        if self.keep:
            self.products = torch.empty(T, *self.P.shape, dtype=src.dtype, device=device)
            self.scales = torch.empty(T, B, dtype=torch.float64, device=device)
        # The max entry of a whole product carried from the identity is its normalising peak.
        self.free = (
            self.metric == "maxabs" and self.cols is None and self.identity_rows and not self.keep
        )
        blocked = block_size(B, src.size) > 1
        n = chunk_steps(src, BLOCK if blocked else 1)
        if not self.carry:
            chunks: Iterable[tuple[int, int]] = chunks_backward(T, n)
        else:  # the carried subspace is refreshed once per chunk, and its products are
            # certified together: a few steps at least, however large a step is
            per_step = max(1, B * src.size**2 * src.dtype.itemsize)
            n_memory = n
            n = min(max(n, 4 * CHUNK_BYTES // per_step), CARRY_CHUNK)
            # Short chunks first, refined early while the products' singular vectors still
            # move; once the carried subspace settles a chunk's products alone, the chunks
            # double (up to the memory of one chunk of Jacobians) until one does not.
            first = BLOCK if blocked else FIRST_CHUNK
            chunks = _growing_chunks(T, first, n, max(n, n_memory), self)
        for begin, stop in chunks:
            self._chunk = (begin, src.factors(begin, stop))
            if blocked:
                self._blocked(begin, self._chunk[1])
            else:
                self._sequential(begin, self._chunk[1])
        refuse_non_finite(self.log_c)
        return self

    def _record(
        self,
        begin: int,
        products: Tensor | None,
        scales: Tensor,
        peaks: Tensor,
        frobenius: bool = False,
    ) -> None:
        """log c(k) for k = begin.. from products (n, B, R, S) with P_k = exp(scales) products
        and their largest entries `peaks` (n, B), float64, or with `frobenius` their Frobenius
        norms."""
        n = scales.shape[0]
        logs = scales + torch.log(peaks)  # (n, B): log of each P_k's largest entry
        if bool(torch.isnan(logs).any() | (logs == math.inf).any()):
            _refuse(self._chunk[1].dense(), self._chunk[0])  # before a decomposition chokes
        if self.keep and products is not None:
            self.products[begin : begin + n] = products
            self.scales[begin : begin + n] = scales
        if self.free or products is None or (self.metric == "maxabs" and self.cols is None):
            self.log_c[begin : begin + n] = logs
            return
        cols = self.cols or slice(None)
        block = products[..., cols]  # (n, B, R, C)
        if not self.carry:
            values = matrix_values(block, self.metric)  # a block can be tiny: no peak reused
            self.log_c[begin : begin + n] = scales + torch.log(values)
            return
        Y = block[:, :, : self.r]  # (n, B, r, C): U^T P_k, the first rows in the carried basis
        lam, first = certified_spectral(block, Y, self.U, peaks.pow(2) if frobenius else None)
        self.log_c[begin : begin + n] = scales + 0.5 * torch.log(lam)
        self.expect_settled = bool(first.all())
        # The newest product's (the smallest k's) top subspace starts the next chunk, unless
        # the carried one already holds all but a negligible part of it: the product is then
        # carried on in a basis whose first r vectors span that subspace.
        if not bool(first[0].all()):
            self.P = into_basis_of(top_subspace(block[0], self.U), self.P)

    def _buffer(self, n: int) -> Tensor:
        """Storage for the chunk's n products, reused from chunk to chunk."""
        shape = (n, *self.P.shape)
        if self._kept is None or self._kept.shape[0] < n:
            self._kept = torch.empty(shape, dtype=self.P.dtype, device=self.P.device)
        return self._kept[:n]

    def _sequential(self, begin: int, factors: Factors, steps: int | None = None) -> None:
        """One product per step, newest first, over the chunk's first `steps` steps."""
        n = factors.steps if steps is None else steps
        if self.expect_settled and self.frobenius_peaks and not self.keep:
            if self._settled_chunk(begin, factors, n):
                return
            self.expect_settled = False
        kept = None if self.free else self._buffer(n)
        scales, peaks = self._steps(factors, n, kept)
        self._record(begin, kept, scales, peaks, self.frobenius_peaks)

    def _steps(self, factors: Factors, n: int, kept: Tensor | None) -> tuple[Tensor, Tensor]:
        """The chunk's first n steps one product each, on the CPU path or the device's."""
        if self.P.device.type == "cpu":
            return self._lazy(factors, n, kept)
        return self._on_device(factors, n, kept)

    def _settled_chunk(self, begin: int, factors: Factors, n: int) -> bool:
        """The chunk's steps keeping only each product's first r rows Y = U^T P_k; True, with
        log c recorded, when the carried subspace settles every product (`core.spectral
        .settled`), else False with the sweep put back where the chunk began."""
        P, scale = self.P.clone(), self.scale.clone()
        Y = torch.empty(n, P.shape[0], self.r, P.shape[2], dtype=P.dtype)
        scales, peaks = self._lazy(factors, n, None, Y)
        lam, ok = settled(Y, peaks.pow(2))
        logs = scales + 0.5 * torch.log(lam)
        if not bool(ok.all() & torch.isfinite(logs).all()):
            self.P, self.scale = P, scale
            return False
        self.log_c[begin : begin + n] = logs
        return True

    def _lazy(
        self, factors: Factors, n: int, kept: Tensor | None, carried: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The CPU path: each product's largest entry (its Frobenius norm with
        `frobenius_peaks`) is read as a Python number (free on the CPU) and the product is
        rescaled only when that leaves [1 / bound, bound], so a step is one product, written
        in place, and a share of one reduction. Small products are measured `GROUP` at a time
        (as many as fit in `GROUP_BYTES`), after all of them are made: one reduction call per
        group instead of one per step (at H = 64 the call costs a fifth of the product).
        Inside a group a product may drift to [1 / bound^2, bound^2] before the last one is
        rescaled. A group that leaves that range (an overflow, a NaN, a zero) is made again a
        step at a time; there a step that overflows, or underflows to where the product
        loses bits to subnormal numbers, is redone from the previous product rescaled to 1,
        and a Frobenius norm whose squares would over- or underflow is taken from the product
        divided by its largest entry. Without `kept` only `carried`, when given, receives each
        product's first r rows, Y = U^T P_k. Returns the log scales and peaks."""
        B = self.P.shape[0]
        bound = 2.0 ** (200 if self.P.dtype == torch.float64 else 20)
        wide = bound * bound
        narrow = 1 / wide
        left = factors.left
        scale = self.scale.tolist()  # replaced, never changed in place: rows may share it
        peaks: list[list[float]] = [[1.0] * B] * n
        scales: list[list[float]] = [scale] * n
        # below this a peak may have lost bits to subnormal numbers
        tiny = torch.finfo(self.P.dtype).tiny / torch.finfo(self.P.dtype).eps
        P = self.P
        if self.frobenius_peaks:

            def measure(out: Tensor) -> list[Any]:
                return torch.linalg.vector_norm(out, dim=(-2, -1)).tolist()

            def exact(out: Tensor) -> list[float]:
                """The Frobenius norms of any finite products: vector_norm squares the
                entries, which over- or underflows beyond about 2^(+-511), so those are taken
                by `matrix_metric`, which divides by the largest entry first."""
                p = measure(out)
                if all(0 < v < math.inf for v in p):
                    return p
                return matrix_metric(out, "frobenius").tolist()

        else:

            def measure(out: Tensor) -> list[Any]:
                return out.abs().amax(dim=(-2, -1)).tolist()

            exact = measure

        previous, last = exact(P), -1  # the peaks of P, and which stored product P is

        most = max(1, min(GROUP, GROUP_BYTES // max(1, P.numel() * P.element_size())))
        rings = self._rings(most) if kept is None else ()
        stored = kept.unbind(0) if kept is not None else ()  # views made once: cheaper
        r = self.r if carried is not None else 0
        i = n - 1
        while i >= 0:
            g = min(most, i + 1)  # steps i, i-1, .., i-g+1: block[t] and outs[first + t]
            if kept is not None:  # hold step i-g+1+t's product
                block, outs, first = kept[i - g + 1 : i + 1], stored, i - g + 1
            else:
                ring, outs = rings[self._turn]
                block, first = ring[:g], 0
                self._turn ^= 1
            start = P
            if g > 1:
                for k in range(g - 1, -1, -1):
                    out = outs[first + k]
                    left(i - g + 1 + k, P, out)  # (B, R, S)
                    P = out
                group = measure(block)  # (g, B)
                if all(narrow <= v < wide for p in group for v in p):  # no zero, no NaN
                    peaks[i - g + 1 : i + 1] = group
                    scales[i - g + 1 : i + 1] = [scale] * g
                    # the last one is brought back into [1 / bound, bound]
                    peaks[i - g + 1], scale = self._in_range(P, group[0], scale, bound)
                    scales[i - g + 1] = scale
                    previous = peaks[i - g + 1]
                    if kept is not None:
                        last = i - g + 1
                    if carried is not None:
                        carried[i - g + 1 : i + 1].copy_(block[:, :, :r])
                    i -= g
                    continue
                P = start  # made again a step at a time
            for k in range(g - 1, -1, -1):
                step, out = i - g + 1 + k, outs[first + k]
                left(step, P, out)
                p = exact(out)
                # an overflow, a NaN, or an underflow of a nonzero product: the step is redone
                # from P rescaled to 1
                if any(not v < bound or v < tiny < u for v, u in zip(p, previous, strict=True)):
                    scale = self._rescale(P, previous, scale)
                    if last >= 0:  # P is a stored product: its record moves with it
                        peaks[last], scales[last] = [1.0 if f > 0 else f for f in previous], scale
                    left(step, P, out)
                    p = exact(out)
                p, scale = self._in_range(out, p, scale, bound)
                peaks[step], scales[step], previous = p, scale, p
                if carried is not None:
                    carried[step].copy_(out[:, :r])
                P = out
                if kept is not None:
                    last = step
            i -= g
        self.P = P.clone() if kept is not None else P  # the stored buffer is reused
        self.scale = torch.tensor(scale, dtype=torch.float64)
        return torch.tensor(scales, dtype=torch.float64), torch.tensor(peaks, dtype=torch.float64)

    def _rings(self, most: int) -> tuple[tuple[Tensor, tuple[Tensor, ...]], ...]:
        """Two buffers of `most` products each, and their slots, used in turn by `_lazy`'s
        groups: the product a group starts from is in the other one. Made once a sweep."""
        shape = (most, *self.P.shape)
        if self._ring is None or self._ring.shape[1:] != shape:
            self._ring = torch.empty(2, *shape, dtype=self.P.dtype, device=self.P.device)
            self._ring_slots = tuple((ring, ring.unbind(0)) for ring in self._ring.unbind(0))
        return self._ring_slots

    @classmethod
    def _in_range(
        cls, out: Tensor, p: list[float], scale: list[float], bound: float
    ) -> tuple[list[float], list[float]]:
        """The rows of `out` whose peaks p lie outside [1 / bound, bound] (zero and
        non-finite ones aside) divided by them in place; the peaks and scales after that."""
        if 1 / bound < min(p) and max(p) < bound:
            return p, scale
        factor = [v if 0 < v <= 1 / bound or bound <= v < math.inf else 1.0 for v in p]
        scale = cls._rescale(out, factor, scale)
        return [v / f for v, f in zip(p, factor, strict=True)], scale

    @staticmethod
    def _rescale(P: Tensor, factor: list[float], scale: list[float]) -> list[float]:
        """Divide P[b] by factor[b] (> 0 and finite ones only); the scales with their logs."""
        safe = [f if 0 < f < math.inf else 1.0 for f in factor]
        P.div_(torch.tensor(safe, dtype=P.dtype).view(-1, 1, 1))
        return [s + math.log(f) for s, f in zip(scale, safe, strict=True)]

    def _on_device(self, factors: Factors, n: int, kept: Tensor | None) -> tuple[Tensor, Tensor]:
        """The GPU path: every product is normalised on the device, never read back per step.
        Returns the log scales and the peaks (1: every product is normalised)."""
        B = self.P.shape[0]
        peaks = torch.empty(n, B, 1, 1, dtype=self.P.dtype, device=self.P.device)
        for i in range(n - 1, -1, -1):
            out = self.Q if kept is None else kept[i]
            factors.left(i, self.P, out)  # (B, R, S)
            peaks[i] = _normalise(out, (1, 2))
            if kept is None:
                self.P, self.Q = out, self.P
            else:
                self.P = out
        self.P = self.P.clone() if kept is not None else self.P
        self.Q = torch.empty_like(self.P)
        logs = torch.log(peaks.view(n, B).to(torch.float64))
        scales = self.scale + suffix_sum(logs)  # (n, B): P_k = exp(scale) * normalised P_k
        self.scale = scales[0]
        return scales, torch.ones_like(scales)

    def _blocked(self, begin: int, factors: Factors) -> None:
        """The chunk's steps in blocks of `BLOCK` (see the module docstring), the few steps
        left over at its start one by one."""
        J = factors.dense()
        n, B, S, _ = J.shape
        m = BLOCK
        left = n % m
        rows = self.P.shape[1]
        # Where the products are kept, the chunk's are measured in one call, its few leading
        # steps included (one call fewer: at S = 16 a call on them costs a tenth of the
        # chunk's); not the carried-subspace sweep's, whose step-by-step peaks differ.
        together = bool(left) and not self.free and not self.carry
        whole = torch.empty(n, B, rows, S, dtype=J.dtype, device=J.device) if together else None
        later = torch.empty(n - left, B, dtype=torch.float64, device=J.device)  # their scales
        if n - left:
            suffix, logs = block_suffix(J[left:], m)
            nb = suffix.shape[0]
            kept = None
            if not self.free:
                store = whole[left:] if whole is not None else J.new_empty(n - left, B, rows, S)
                kept = store.view(nb, m, B, rows, S)
            all_scales = later.view(nb, m, B)
            for b in range(nb - 1, -1, -1):
                products = (self.P @ suffix[b].view(B, S, m * S)).view(B, rows, m, S)  # wide
                peak = _normalise(products, (1, 3)).view(B, m).to(torch.float64)
                scales = self.scale.unsqueeze(1) + logs[b].T + torch.log(peak)  # (B, m)
                if kept is not None:
                    kept[b] = products.permute(2, 0, 1, 3)  # (m, B, R, S)
                all_scales[b] = scales.T
                self.P = products[:, :, 0].contiguous()  # P at the block's first step
                self.scale = scales[:, 0]
            if whole is None:
                flat = None if kept is None else kept.view(nb * m, B, rows, S)
                self._record(begin + left, flat, later, torch.ones_like(later))
        if whole is not None:  # the leading steps into the same store, then one record
            first, peaks = self._steps(factors, left, whole[:left])  # P: a copy, not a view
            ones = torch.ones_like(later)
            self._record(begin, whole, torch.cat([first, later]), torch.cat([peaks, ones]))
        elif left:
            self._sequential(begin, factors, left)


def _growing_chunks(
    T: int, first: int, n: int, longest: int, sweep: Sweep
) -> Iterator[tuple[int, int]]:
    """[start, stop) chunks from the end of 0..T back to 0 for a sweep with a carried
    subspace: `first` steps, doubling to n, and on past n (up to `longest`) while the sweep
    expects the next chunk to be settled (`Sweep.expect_settled`, read as each chunk ends)."""
    stop, size = T, min(first, n)
    while stop > 0:
        yield max(0, stop - size), stop
        stop -= size
        size = min(longest, 2 * size) if sweep.expect_settled else min(n, 2 * size)


def _refuse(J: Tensor, begin: int) -> None:
    """Name the non-finite Jacobians of the chunk that turned the sweep's scale NaN or +inf."""
    bad = ~torch.isfinite(J)
    count = int(bad.sum())
    first = begin + 1 + int(torch.nonzero(bad.flatten(1).any(dim=1)).min()) if count else 0
    where = f" (the first in J_{first})" if count else ""
    check(False, f"`jacobians` must be finite, got {count} NaN/Inf entries{where}")


def block_suffix(J: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Suffix products inside blocks of m steps, for all blocks at once.

    Block b of J (nb m, B, S, S) holds X_i = J[b m + i] for i = 0..m-1, and
    R_{b,i} = X_{m-1} ... X_i is normalised to a largest entry of 1 with its natural-log scale
    in logs[b, i]. The result is laid out (nb, B, S, m, S) so that [R_{b,0} | ... | R_{b,m-1}]
    of one block and one sequence is one contiguous (S, m S) matrix: a single wide product
    applies all of them.

    Returns:
        suffix (nb, B, S, m, S), logs (nb, m, B) float64.
    """
    n, B, S, _ = J.shape
    nb = n // m
    X = J.reshape(nb, m, B, S, S)
    suffix = torch.empty(nb, B, S, m, S, dtype=J.dtype, device=J.device)
    logs = torch.empty(nb, m, B, dtype=torch.float64, device=J.device)
    R = X[:, m - 1].clone()  # (nb, B, S, S)
    logs[:, m - 1] = torch.log(_normalise(R, (2, 3)).view(nb, B).to(torch.float64))
    suffix[:, :, :, m - 1] = R
    for i in range(m - 2, -1, -1):
        R = R @ X[:, i]
        step = torch.log(_normalise(R, (2, 3)).view(nb, B).to(torch.float64))
        logs[:, i] = logs[:, i + 1] + step
        suffix[:, :, :, i] = R
    return suffix, logs


def contribution_curve(
    jacobians: Tensor | StepSource,
    metric: str = "spectral",
    *,
    rows: slice | None = None,
    cols: slice | None = None,
) -> ContributionCurve:
    """c(k) = metric(J_T ... J_{k+1}) for every k = 0..T-1 in one backward sweep.

    Args:
        jacobians: J_1..J_T, (T, S, S) or batched (T, B, S, S) with row t-1 holding J_t, or a
            source that produces them a chunk at a time (`gradtrace.core.factors.StepSource`,
            such as a cell's `Replay`).
        metric: "spectral" (largest singular value), "frobenius" or "maxabs" (largest
            absolute entry).
        rows: optional block of the product's rows to measure (e.g. the h rows of an LSTM's
            (h, c) state); only these rows are carried.
        cols: optional block of the product's columns to measure.

    Returns:
        A `ContributionCurve` with `log10_norm` of shape (T,) or (B, T).

    Raises:
        GradtraceError: on an unknown metric, malformed or non-finite Jacobians.

    Example:
        >>> J = torch.full((50, 1, 1), 0.9, dtype=torch.float64)
        >>> contribution_curve(J).log10_norm[0]  # log10 0.9**50
        tensor(-2.2879, dtype=torch.float64)
    """
    check_metric(metric)
    source, batched = as_source(jacobians)
    S = source.size
    for name, block in (("rows", rows), ("cols", cols)):
        check(
            block is None or (isinstance(block, slice) and len(range(S)[block]) > 0),
            f"`{name}` must be a non-empty slice of the state's {S} entries, got {block!r}",
        )
    eye = torch.eye(S, dtype=source.dtype, device=source.device)
    start = eye[rows or slice(None)].expand(source.batch, -1, S)  # (B, R, S): ds_T/ds_T rows
    sweep = Sweep(source, start, metric, cols, identity_rows=True).run()
    log10 = (sweep.log_c / _LN10).T  # (B, T)
    return ContributionCurve(log10 if batched else log10[0], metric)


def diagonal_curve(diagonals: Tensor, metric: str = "spectral") -> ContributionCurve:
    """c(k) for diagonal step Jacobians J_t = diag(d_t), in O(T S) rather than O(T S^3).

    The product is diag(prod_{t>k} d_t), so log|entry i| is a suffix sum of log|d_t,i|: the
    spectral and max-abs norms are its largest entry, the Frobenius norm its root sum of
    squares. This is the LSTM's cell-state path, dc_t/dc_{t-1} = diag(f_t).

    Args:
        diagonals: d_1..d_T, (T, S) or batched (T, B, S).
        metric: "spectral", "frobenius" or "maxabs".

    Returns:
        A `ContributionCurve` with `log10_norm` of shape (T,) or (B, T).
    """
    check_metric(metric)
    check(
        isinstance(diagonals, Tensor) and diagonals.ndim in (2, 3) and diagonals.shape[0] >= 1,
        "`diagonals` must have shape (T, S) or (T, B, S) with T >= 1, got "
        f"{tuple(diagonals.shape) if isinstance(diagonals, Tensor) else type(diagonals)}",
    )
    logs = torch.log10(diagonals.abs().to(torch.float64))  # (T, [B,] S)
    suffix = suffix_sum(logs)  # (T, [B,] S): log10 |prod_{t>k} d_t|
    if metric == "frobenius":
        curve = 0.5 * torch.logsumexp(2 * _LN10 * suffix, dim=-1) / _LN10
    else:
        curve = suffix.amax(dim=-1)  # (T, [B])
    refuse_non_finite(curve, "diagonals")
    return ContributionCurve(curve.T if curve.ndim == 2 else curve, metric)
