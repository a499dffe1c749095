"""`trace(model, *args, **kwargs)`: gradient flow through time in every recurrent layer of a
real model, called as its author calls it.

The model runs once, on the arguments it is given (`forward(input, hidden)` and all). Hooks find
each nn.RNN / nn.LSTM / nn.GRU and each nn.RNNCell / nn.LSTMCell / nn.GRUCell wherever it sits,
see what it was given, and re-execute it step by step from its own weights
(`gradtrace.tracing.capture`); a cell called in a loop is one recurrence.
Per layer and direction the cells' analytic step Jacobians J_t = ds_t/ds_{t-1} then go through
the core's engine and theory:

    c(k) = metric(dh_T/dh_k)          hidden-state path, k = 0..T-1 (for an LSTM the (h, h)
                                      block of d(h_T, c_T)/d(h_k, c_k))
    prod_t diag(f_t)                  LSTM cell-state path
    ||dL/dh_k||                       with a loss: the whole gradient of L at h_k, through later
                                      steps, the outputs and the layers above (autograd on the
                                      re-execution spliced into the model's forward)
    gamma, sigma_max, rho, bound, verdict, horizon, top Lyapunov exponent, and on request the
    top-K Lyapunov spectrum with its per-step local factors

Layer l's curve is its own recurrence dh^l_T/dh^l_k with the layers below held fixed. Because
the re-execution never calls the fused kernel's backward, it works in eval mode on cuDNN, for
ReLU RNNs, GRUs, stacked and bidirectional modules and LSTM projections alike. In train mode
the recurrence traced is the one training runs: the model's own dropout layers draw as usual,
and a module's dropout between its layers is drawn from gradtrace's generator, both seeded by
`seed`, which the result records. The model is left exactly as it was (`gradtrace.tracing.forward
.untouched`).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch
from torch import Tensor, nn

from gradtrace.analysis.flow import LyapunovOption, Steps, assemble, check_lyapunov_option
from gradtrace.core.engine import check_metric, matrix_metric
from gradtrace.core.matrix_free import check_estimate
from gradtrace.errors import GradtraceError, check, check_seed
from gradtrace.records.flow import GradientFlow
from gradtrace.records.trace import TraceResult
from gradtrace.tracing.capture import Call, Track, capture, loss_gradients
from gradtrace.tracing.forward import (
    LossFn,
    call_loss,
    call_model,
    check_inputs,
    check_target,
    seed_global,
    untouched,
)
from gradtrace.tracing.modules import DIRECTIONS, eager_recurrent, select_modules

MODES = ("model", "train", "eval")
OPTIONS = ("module", "loss_fn", "target", "metric", "lyapunov", "seed", "mode", "estimate")


def trace(
    model: nn.Module,
    *args: Any,
    module: str | nn.Module | None = None,
    loss_fn: LossFn | None = None,
    target: Any = None,
    metric: str = "spectral",
    lyapunov: LyapunovOption = None,
    seed: int = 0,
    mode: str = "model",
    estimate: str = "auto",
    forward_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> TraceResult:
    """Measure how gradients flow back through time in each recurrent layer of `model`.

    Args:
        model: Any module holding an nn.RNN, nn.LSTM, nn.GRU or a recurrent cell (or one
            itself; a TorchScript module is rebuilt as an eager copy), on any device.
        *args: What `model` takes, as its forward takes it: e.g. (T, B) token ids and a hidden
            state; the recurrent modules may be batch-first or not.
        module: Trace only this recurrent module (its dotted path or the module); None traces
            every one the forward calls.
        loss_fn: With it, also measure ||dL/dh_k||; called as loss_fn(output, target), or
            loss_fn(output) when `target` is None, with the forward's whole output (a tuple or
            dict as the model returns it).
        target: The loss's target.
        metric: How c(k) measures dh_T/dh_k: "spectral", "frobenius" or "maxabs".
        lyapunov: K >= 1 for the top-K Lyapunov exponents of each layer's full state (capped at
            its S), "full" for all of them, None for none beyond the top one.
        seed: Seeds the random draws of a train-mode trace, which are recorded in the result:
            the model's own dropout layers draw from torch's global generator set to `seed`
            for the trace (and restored after), the masks between a module's layers from
            gradtrace's generator set to `seed + 1`; also seeds the Lyapunov starts.
        mode: "model" traces the model in the mode it is in; "train" or "eval" switch it for
            the trace only.
        estimate: "auto" (exact unless its work is over the budget in force), "exact", or
            "matrix-free" (the spectral norm from a few vector-Jacobian products per step,
            for large states; `gradtrace.core.matrix_free`).
        forward_kwargs: Keyword arguments for `model` whose names are also options of
            `trace` (a forward that takes its own `mode` or `target`); None for none.
        **kwargs: Passed to `model` as well (a forward that takes keywords only included).

    Returns:
        A `TraceResult` with one `GradientFlow` per module, layer and direction. A reverse
        direction's curve runs over its own time order: its k = 0 is its initial state, and
        its last step reads x_1.

    Raises:
        GradtraceError: if `model` has no recurrent module (measure it with
            `input_sensitivity`), the arguments do not fit it or are not finite, or the output
            or loss is unusable.

    Example:
        >>> lstm = torch.nn.LSTM(3, 8, num_layers=2, dtype=torch.float64)
        >>> result = trace(lstm, torch.randn(50, 4, 3, dtype=torch.float64))
        >>> result.find(layer=1).log10_norm.shape  # (B, T)
        torch.Size([4, 50])
    """
    try:
        return _trace(
            model, args, kwargs, forward_kwargs, module, loss_fn, target, metric, lyapunov,
            seed, mode, estimate,
        )  # fmt: skip
    except GradtraceError as err:
        options = dict(zip(OPTIONS, (module, loss_fn, target, metric, lyapunov, seed, mode,
                                     estimate), strict=True))  # fmt: skip
        clashes = _clashes(model, forward_kwargs, options)
        if not clashes:
            raise
        names = ", ".join(f"`{n}`" for n in clashes)
        raise GradtraceError(
            f"{str(err).rstrip('.')}; `model.forward` also takes {names}, which `trace` reads "
            f"as its own option: give the model's in `forward_kwargs`, e.g. forward_kwargs="
            f"{{{clashes[0]!r}: ...}}"
        ) from None


def _clashes(
    model: nn.Module, forward_kwargs: dict[str, Any] | None, options: dict[str, Any]
) -> list[str]:
    """The options given to `trace` (not left at their defaults) that are also parameters of
    the model's forward, and that `forward_kwargs` does not already give it."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):  # a builtin or scripted forward: none
        return []
    defaults = inspect.signature(trace).parameters
    given = forward_kwargs or {}
    return [
        n
        for n, value in options.items()
        if n in parameters and n not in given and _differs(value, defaults[n].default)
    ]


def _differs(value: Any, default: Any) -> bool:
    """Whether an option was given: not its default (any value, a tensor included)."""
    if value is default:
        return False
    try:
        return bool(value != default)
    except (TypeError, RuntimeError, ValueError):
        return True


def _trace(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    forward_kwargs: dict[str, Any] | None,
    module: str | nn.Module | None,
    loss_fn: LossFn | None,
    target: Any,
    metric: str,
    lyapunov: LyapunovOption,
    seed: int,
    mode: str,
    estimate: str,
) -> TraceResult:
    check_metric(metric)
    check_estimate(estimate, metric)
    check_lyapunov_option(lyapunov)
    check_seed(seed)
    check(mode in MODES, f"`mode` must be one of {', '.join(MODES)}, got {mode!r}")
    check_target(loss_fn, target)
    check(
        forward_kwargs is None or isinstance(forward_kwargs, dict),
        f"`forward_kwargs` must be a dict of the model's keyword arguments, got "
        f"{type(forward_kwargs).__name__}",
    )
    kwargs = {**kwargs, **(forward_kwargs or {})}
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    check(
        bool(args) or bool(kwargs),
        "`model` must be given its inputs, as its forward takes them; got none",
    )
    for a in tensors:
        check_inputs(a)
    if isinstance(model, torch.jit.ScriptModule):
        model = eager_recurrent(model)
    splice = loss_fn is not None
    targets = select_modules(model, module)
    with untouched(model):
        if mode != "model":
            model.train(mode == "train")
        training = any(m.training for _, m in targets)
        # the model's own dropout layers draw from the global generator, seeded just below
        own_dropout = any(
            isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0
            for m in model.modules()
        )
        device = next((t.device for t in tensors), torch.device("cpu"))
        seed_global(seed, device)  # the model's own dropout layers, reproducibly
        generator = torch.Generator(device=device).manual_seed(seed + 1)
        hooks = capture(targets, splice=splice, generator=generator)
        with hooks as calls, torch.set_grad_enabled(splice):
            output = call_model(model, args, kwargs)
            called = [call for call in calls if call.calls]
            names = ", ".join(f"`{call.path or 'model'}`" for call in calls)
            check(bool(called), f"`model` never called {names}, so there is no trace")
            loss, grads = None, {}
            if loss_fn is not None:
                loss = call_loss(loss_fn, output, target)
                grads = loss_gradients(loss, called)
    layers = [
        _record(call, track, grads.get((c, i)), splice, metric, lyapunov, seed, estimate)
        for c, call in enumerate(called)
        for i, track in enumerate(call.tracks)
    ]
    dropped = own_dropout or any(layer.dropout > 0 for layer in layers)
    return TraceResult(
        tuple(layers),
        metric,
        tuple(tensors[0].shape) if tensors else (),
        None if loss is None else float(loss.detach()),
        "train" if training else "eval",
        seed if dropped else None,
    )


def _loss_profile(grad: Tensor | None, proj_size: int) -> Tensor | None:
    """log10 ||dL/dh_k|| for k = 0..T from dL/ds_k (T + 1, B, S), shape (B, T + 1)."""
    if grad is None:
        return None
    h_part = grad[..., :proj_size].to(torch.float64).unsqueeze(-2)  # (T + 1, B, 1, P)
    # matrix_metric scales by the largest entry first: vector_norm's squares would underflow
    # for a vanishing float64 gradient below about 1e-154 and read it as exactly zero
    return torch.log10(matrix_metric(h_part, "frobenius")).T  # (B, T + 1)


def _record(
    call: Call,
    track: Track,
    grad: Tensor | None,
    spliced: bool,
    metric: str,
    lyapunov: LyapunovOption,
    seed: int,
    estimate: str,
) -> GradientFlow:
    run = track.replay(spliced)
    wide = run.widened()  # a float16 / bfloat16 model's states, measured in float32
    flow = assemble(
        Steps.of(wide),
        metric=metric,
        loss_grad_log10=_loss_profile(grad, run.weights.proj_size),
        lyapunov=lyapunov,
        seed=seed,
        estimate=estimate,
        module=call.path,
        layer=track.layer,
        direction=DIRECTIONS[track.direction],
        calls=call.chained,
        untraced_calls=call.calls - call.chained,
        output_error=call.output_error,
        dropout=track.dropout,
        sequences=track.rows,
    )
    notes = [flow.note]
    if wide is not run:
        held = str(run.starts.dtype).removeprefix("torch.")
        notes.append(f"Measured in float32 from the model's {held} states and weights.")
    if call.fed_back:
        notes.append(
            f"{_nth_calls(call.fed_back, call.chained)} took an input computed from the state "
            "before (an autoregressive loop): c(k) holds each input as given and leaves that "
            "path out; ||dL/dh_k|| includes it."
        )
    elif call.chained > 1 and not spliced:
        notes.append(
            "Each call's input is held as given; if the loop computes it from the state before "
            "(autoregressive), c(k) leaves that path out (trace with a loss to check)."
        )
    if len(notes) == 1:
        return flow
    return dataclasses.replace(flow, note=" ".join(n for n in notes if n))


def _nth_calls(fed: int, chained: int) -> str:
    return (
        f"All {chained} calls but the first" if fed == chained - 1 else f"{fed} of {chained} calls"
    )
