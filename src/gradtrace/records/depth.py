"""Gradient norms through the layers of a deep feed-forward net."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from gradtrace.records.base import Record


@dataclass(frozen=True, eq=False, repr=False)
class DepthProfile(Record):
    """Per-layer gradient norms of an L-layer MLP with the theory beside them.

    Attributes:
        activation: phi.
        init: "default", "xavier" or "he".
        width: H.
        batch: B, the batch the loss is averaged over.
        log10_grad_norm: (L+1,) log10 ||dL/dy_l|| for l = 0..L (l = 0 is the input), the norm
            taken over the whole (B, H) batch gradient.
        sigma_max: (L,) largest singular value of each W_l.
        gamma: sup |phi'|.
        bound_log10: (L+1,) log10 of ||dL/dy_L|| prod_{m>l} gamma sigma_max(W_m).
        rate_per_layer: Measured slope of log10 ||dL/dy_l|| per layer going back from the output.
        verdict: One of `gradtrace.core.theory.VERDICTS`, read through depth.
    """

    KIND = "depth_profile"

    activation: str
    init: str
    width: int
    batch: int
    log10_grad_norm: Tensor
    sigma_max: Tensor
    gamma: float
    bound_log10: Tensor
    rate_per_layer: float
    verdict: str

    @property
    def depth(self) -> int:
        """L."""
        return int(self.sigma_max.shape[0])

    def __repr__(self) -> str:
        return (
            f"DepthProfile({self.depth}-layer {self.activation} MLP, {self.init} init, width "
            f"{self.width}: {self.verdict}, {self.rate_per_layer:+.3g} decades per layer)"
        )
