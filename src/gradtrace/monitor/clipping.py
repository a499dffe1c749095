"""The clipping audit: what gradient clipping did on a step, and whether it was used right.

Inside a monitored step `torch.nn.utils.clip_grad_norm_` is wrapped (the module attribute, so
`torch.nn.utils.clip_grad_norm_(...)` calls are seen; a name imported before the step is not,
and can be reported with `Step.clipped(total_norm, max_norm)`). Each call records the total
norm it saw and its threshold, and is checked against what the step did before it:

    after optimizer.step()     the update already used the unclipped gradients
    before backward()          there were no gradients yet, so the clip did nothing
    an infinite total norm     clip_grad_norm_ scaled every gradient by max_norm / inf = 0:
                               the update is silently zero (NaN where a gradient was inf)
    a NaN total norm           it scaled them by max_norm / nan = nan: every gradient is NaN,
                               and so is every weight the optimizer then updates
    max_norm = inf             clips nothing; with an infinite norm inf / inf makes every
                               gradient NaN (log the norm with torch.nn.utils.get_total_norm)

A correct call (after backward, before the optimizer's step, finite norm, finite threshold)
raises none of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.utils as nn_utils
from torch import Tensor
from torch.nn.utils import clip_grad as clip_module

AFTER_STEP = (
    "gradient clipping ran after optimizer.step(): the update already used the unclipped "
    "gradients; clip between backward() and optimizer.step()"
)
BEFORE_BACKWARD = (
    "gradient clipping ran before backward() produced this step's gradients, so it clipped "
    "nothing; clip between backward() and optimizer.step()"
)
ZEROED = (
    "clip_grad_norm_ saw an infinite total norm and scaled every gradient by max_norm / inf = "
    "0, so this step's update is silently zero (NaN where a gradient was infinite); find the "
    "non-finite gradient or pass error_if_nonfinite=True"
)
NAN_NORM = (
    "clip_grad_norm_ saw a NaN total norm and scaled every gradient by max_norm / nan = nan, "
    "so every gradient is NaN and optimizer.step() writes NaN into every weight it updates; "
    "find the non-finite gradient or pass error_if_nonfinite=True"
)
INFINITE = (
    "clip_grad_norm_ was given max_norm=inf: it clips nothing, and when the total norm is "
    "infinite inf / inf turns every gradient into NaN; to log the norm use "
    "torch.nn.utils.get_total_norm instead"
)


@dataclass
class ClipCall:
    """One clipping call: the norm it saw, its threshold and what came before it."""

    norm: float
    max_norm: float | None
    warnings: list[str] = field(default_factory=list)

    @property
    def acted(self) -> bool:
        """Whether it scaled the gradients down (a non-finite norm scales them to 0)."""
        if not math.isfinite(self.norm):
            return self.max_norm is not None and math.isfinite(self.max_norm)
        return self.max_norm is not None and self.norm > self.max_norm


@dataclass
class StepEvents:
    """The order of what happened in a step, as the audit needs it."""

    backward_done: bool = False
    optimizer_stepped: bool = False
    calls: list[ClipCall] = field(default_factory=list)
    before_clip: Callable[[], None] | None = None  # reads the raw gradients before a clip

    def clip(self, norm: float, max_norm: float | None) -> ClipCall:
        """Record one clipping call and its misuse."""
        call = ClipCall(norm, max_norm)
        if self.optimizer_stepped:
            call.warnings.append(AFTER_STEP)
        elif not self.backward_done:
            call.warnings.append(BEFORE_BACKWARD)
        if not math.isfinite(norm) and (max_norm is None or math.isfinite(max_norm)):
            call.warnings.append(ZEROED if norm > 0 else NAN_NORM)
        if max_norm is not None and math.isinf(max_norm):
            call.warnings.append(INFINITE)
        self.calls.append(call)
        return call


def _number(value: Any) -> float:
    return float(value.detach()) if isinstance(value, Tensor) else float(value)


@contextmanager
def watching(events: StepEvents) -> Iterator[None]:
    """Wrap `torch.nn.utils.clip_grad_norm_` for the block; every call lands in `events`."""
    own: Callable[..., Tensor] = clip_module.clip_grad_norm_

    def audited(parameters: Any, max_norm: float, *args: Any, **kwargs: Any) -> Tensor:
        if events.before_clip is not None and not events.calls:
            events.before_clip()
        total = own(parameters, max_norm, *args, **kwargs)
        events.clip(_number(total), _number(max_norm))
        return total

    nn_utils.clip_grad_norm_ = audited
    clip_module.clip_grad_norm_ = audited
    try:
        yield
    finally:
        nn_utils.clip_grad_norm_ = own
        clip_module.clip_grad_norm_ = own


def grad_norm(parameters: list[torch.nn.Parameter]) -> float:
    """The global 2-norm of the gradients that exist, NaN if none does."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return math.nan
    norms = torch._foreach_norm(grads, 2.0)
    return float(torch.linalg.vector_norm(torch.stack([n.to(torch.float64) for n in norms])))
