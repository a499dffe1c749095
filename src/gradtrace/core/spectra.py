"""Recurrent weight matrices W_hh (H, H) with a chosen spectrum, and the SPEC strings naming them.

Every constructor is seeded through a `torch.Generator` and returns the same matrix for the same
seed on any device. A SPEC string (the CLI's `--spectrum`) names one of them:

    eig-uniform:LO:HI   V diag(lambda) V^-1, lambda_i ~ U[LO, HI), V Gaussian (the lectures' way)
    radius:R            Gaussian matrix rescaled to spectral radius R
    orthogonal[:S]      S * Q with Q Haar-orthogonal (default S = 1)
    identity[:S]        S * I, the IRNN initialisation (default S = 1)
    gaussian:G          entries N(0, G^2 / H), the random-matrix "gain" parametrisation

A matrix V diag(lambda) V^-1 with random V is far from normal: its spectral norm is usually much
larger than its largest eigenvalue, which is exactly why the eigenvalue criterion can mislead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gradtrace.errors import GradtraceError, check


def with_eigenvalues(
    eigenvalues: Tensor, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> Tensor:
    """W = V diag(eigenvalues) V^-1 with V a random Gaussian matrix (real eigenvalues)."""
    H = eigenvalues.shape[0]
    V = torch.randn(H, H, generator=generator, dtype=torch.float64)
    lam = eigenvalues.to(torch.float64)
    return ((V * lam) @ torch.linalg.inv(V)).to(dtype)  # V diag(lam) V^-1


def eig_uniform(
    hidden: int, low: float, high: float, generator: torch.Generator, dtype: torch.dtype
) -> Tensor:
    """Eigenvalues uniform in [low, high) with random eigenvectors."""
    lam = low + (high - low) * torch.rand(hidden, generator=generator, dtype=torch.float64)
    return with_eigenvalues(lam, generator).to(dtype)


def radius(hidden: int, rho: float, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """A Gaussian matrix rescaled so that its spectral radius is exactly `rho`."""
    W = torch.randn(hidden, hidden, generator=generator, dtype=torch.float64)
    current = torch.linalg.eigvals(W).abs().max()
    return (W * (rho / current)).to(dtype)


def orthogonal(hidden: int, scale: float, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """`scale` times a Haar-distributed orthogonal matrix (QR with the sign fix)."""
    A = torch.randn(hidden, hidden, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    Q = Q * torch.sign(torch.diagonal(R))  # makes the distribution exactly Haar
    return (scale * Q).to(dtype)


def identity(hidden: int, scale: float, dtype: torch.dtype) -> Tensor:
    """`scale` times the identity: the IRNN initialisation (Le, Jaitly, Hinton 2015)."""
    return scale * torch.eye(hidden, dtype=dtype)


def gaussian(hidden: int, gain: float, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """Entries N(0, gain^2 / H): spectral radius close to `gain` for large H."""
    W = torch.randn(hidden, hidden, generator=generator, dtype=torch.float64)
    return (W * (gain / hidden**0.5)).to(dtype)


@dataclass(frozen=True)
class Spectrum:
    """A parsed SPEC: the constructor's name and its numeric arguments."""

    kind: str
    args: tuple[float, ...]

    def build(self, hidden: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """Draw one (H, H) matrix of this spectrum."""
        if self.kind == "eig-uniform":
            return eig_uniform(hidden, self.args[0], self.args[1], generator, dtype)
        if self.kind == "radius":
            return radius(hidden, self.args[0], generator, dtype)
        if self.kind == "orthogonal":
            return orthogonal(hidden, self.args[0], generator, dtype)
        if self.kind == "identity":
            return identity(hidden, self.args[0], dtype)
        return gaussian(hidden, self.args[0], generator, dtype)


# name -> (numbers required, default for an optional last number or None, usage)
_GRAMMAR: dict[str, tuple[int, float | None, str]] = {
    "eig-uniform": (2, None, "eig-uniform:LO:HI"),
    "radius": (1, None, "radius:R"),
    "orthogonal": (1, 1.0, "orthogonal[:S]"),
    "identity": (1, 1.0, "identity[:S]"),
    "gaussian": (1, None, "gaussian:G"),
}
SPEC_FORMS = ", ".join(usage for _, _, usage in _GRAMMAR.values())


def parse_spectrum(spec: str) -> Spectrum:
    """Parse a SPEC string such as "eig-uniform:0:4" or "identity".

    Raises:
        GradtraceError: naming the SPEC and the accepted forms when it is malformed.
    """
    kind, *fields = spec.strip().split(":")
    if kind not in _GRAMMAR:
        raise GradtraceError(f"`spectrum` must be one of {SPEC_FORMS}, got {spec!r}")
    needed, default, usage = _GRAMMAR[kind]
    if not fields and default is not None:
        fields = [str(default)]
    try:
        args = tuple(float(f) for f in fields)
    except ValueError:
        raise GradtraceError(
            f"`spectrum` must have numbers in the form {usage}, got {spec!r}"
        ) from None
    check(
        len(args) == needed and all(a == a and abs(a) != float("inf") for a in args),
        f"`spectrum` must have the form {usage} with finite numbers, got {spec!r}",
    )
    if kind == "eig-uniform":
        check(args[0] < args[1], f"`spectrum` needs LO < HI in {usage}, got {spec!r}")
    if kind in ("radius", "gaussian"):
        check(args[0] >= 0, f"`spectrum` needs a value >= 0 in {usage}, got {spec!r}")
    return Spectrum(kind, args)
