"""Fixed points of one layer of a real recurrent module for a fixed input.

With its input held at x, a layer is the autonomous map s -> F(s) = step(x, s) on its state
(h, or cat(h, c) for an LSTM). Its fixed points s* = F(s*), the eigenvalues of dF/ds there and
their type (sink, source, saddle, marginal) come from the general finder
`gradtrace.core.fixed_points.find_fixed_points`, given the cell's analytic Jacobian. The
search runs in float64 on the CPU whatever the module's dtype and device.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradtrace.cells import cell_of, weights_from_torch
from gradtrace.core.fixed_points import box_starts, find_fixed_points
from gradtrace.errors import check
from gradtrace.records.fixed_points import FixedPoints
from gradtrace.tracing.modules import DIRECTIONS, select_modules


def layer_fixed_points(
    model: nn.Module,
    x: Tensor,
    *,
    module: str | nn.Module | None = None,
    layer: int = 0,
    direction: str = "forward",
    starts: int = 64,
    box: tuple[float, float] = (-1.0, 1.0),
    seed: int = 0,
) -> FixedPoints:
    """Find the fixed points of one layer and direction of a recurrent module for input x.

    Args:
        model: An nn.RNN / nn.LSTM / nn.GRU, or a model holding one (name it with `module`
            when it holds several).
        x: The layer's constant input, shape (I_l,): the module's input features for layer 0,
            D P features (both directions of the layer below) for a higher layer.
        module: The recurrent module's dotted path, or the module.
        layer: The layer index.
        direction: "forward" or "reverse".
        starts: How many starting states to draw from the box.
        box: Starts are uniform in [low, high]^S.
        seed: Seeds the starts.

    Returns:
        The distinct fixed points with eigenvalues and types, states of size S.

    Raises:
        GradtraceError: if the module is ambiguous or missing, or `x` does not fit the layer.

    Example:
        >>> rnn = torch.nn.RNN(1, 2, dtype=torch.float64)
        >>> found = layer_fixed_points(rnn, torch.zeros(1, dtype=torch.float64))
        >>> [p.kind for p in found.points]  # doctest: +SKIP
        ['stable']
    """
    targets = select_modules(model, module)
    check(
        len(targets) == 1,
        f"`model` holds {len(targets)} recurrent modules "
        f"({', '.join(repr(p) for p, _ in targets)}); name one with `module`",
    )
    path, rnn = targets[0]
    check(
        direction in DIRECTIONS,
        f"`direction` must be one of {', '.join(DIRECTIONS)}, got {direction!r}",
    )
    weights = weights_from_torch(rnn, layer, DIRECTIONS.index(direction))
    weights = weights.to(dtype=torch.float64, device="cpu")
    check(
        isinstance(x, Tensor) and tuple(x.shape) == (weights.input_size,),
        f"`x` must have shape ({weights.input_size},) for layer {layer} of "
        f"`{path or 'model'}`, got {tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}",
    )
    check(bool(torch.isfinite(x).all()), "`x` must be finite, got NaN/Inf entries")
    cell = cell_of(weights)
    x64 = x.detach().to("cpu", torch.float64).unsqueeze(0)  # (1, I_l)
    search_starts = box_starts(starts, weights.state_size, box[0], box[1], seed=seed)
    return find_fixed_points(
        lambda s: cell.step(weights, x64.expand(s.shape[0], -1), s),
        search_starts,
        jacobian=lambda s: cell.jacobian(weights, x64.expand(s.shape[0], -1), s),
    )
