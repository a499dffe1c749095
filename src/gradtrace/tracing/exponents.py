"""The `lyapunov` option of a trace: which exponents to compute, from a seeded start frame.

K >= 1 asks for the top K exponents of a layer's full state (capped at its size S), "full" for
all S, None for none. The start directions Q_0 are drawn on the CPU in float64 from `seed`, so
the same seed gives the same estimate on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradtrace.core.lyapunov import LyapunovSpectrum, lyapunov_spectrum, start_frame
from gradtrace.errors import check

LyapunovOption = int | str | None


def check_lyapunov_option(lyapunov: LyapunovOption) -> None:
    """Raise GradtraceError unless `lyapunov` is None, an integer K >= 1 or "full"."""
    ok = lyapunov is None or lyapunov == "full"
    ok = ok or (isinstance(lyapunov, int) and not isinstance(lyapunov, bool) and lyapunov >= 1)
    check(ok, f"`lyapunov` must be None, an integer K >= 1 or 'full', got {lyapunov!r}")


def traced_spectrum(
    jacobians: Tensor, lyapunov: LyapunovOption, seed: int
) -> LyapunovSpectrum | None:
    """The top-K spectrum of each sequence along its trajectory, on the CPU in float64.

    Args:
        jacobians: J_1..J_T of B sequences, shape (T, B, S, S).
        lyapunov: K, "full" or None (then None is returned).
        seed: Seeds Q_0 (see `start_frame`).

    Returns:
        Exponents (B, K) and local log factors (T, B, K), or None.
    """
    if lyapunov is None:
        return None
    S = jacobians.shape[-1]
    K = S if lyapunov == "full" else min(int(lyapunov), S)
    q0 = start_frame(S, K, seed).to(jacobians.device)
    spectrum = lyapunov_spectrum(jacobians, K, q0=q0)
    return LyapunovSpectrum(
        spectrum.exponents.to("cpu", torch.float64),
        spectrum.local_log_factors.to("cpu", torch.float64),
    )
