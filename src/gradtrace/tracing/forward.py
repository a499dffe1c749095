"""Calling a user's model: checked inputs, its output tensor, its loss, errors as one sentence,
and the model left exactly as it was.

Shared by `trace` and `input_sensitivity`. A loss gets the forward's output as the model
returns it (nn.LSTM returns (output, (h_n, c_n))); where one tensor must stand for the output,
it is the first; a PackedSequence output is refused, since its rows may be sequences of
different lengths whose last steps are not one time step (a packed input of equal lengths is
unpacked where the recurrent module receives it: `capture`). `untouched` restores everything a
forward in train mode can change: buffers (BatchNorm's running statistics), every module's
mode and own attributes, the parameters' gradients and the global random-number generators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from gradtrace.errors import GradtraceError, check

LossFn = Callable[..., Tensor]


def check_inputs(inputs: Any) -> Tensor:
    """Check that `inputs` is a tensor with at least one entry and no NaN/Inf; return it.

    Raises:
        GradtraceError: if it is a PackedSequence, not a tensor, empty, or not finite.
    """
    check(
        not isinstance(inputs, PackedSequence),
        "`inputs` must be a padded tensor, got a PackedSequence; pad it with "
        "torch.nn.utils.rnn.pad_packed_sequence and trace equal-length sequences",
    )
    check(
        isinstance(inputs, Tensor),
        f"`inputs` must be a torch.Tensor, got {type(inputs).__name__}",
    )
    assert isinstance(inputs, Tensor)  # for the type checker
    check(inputs.numel() > 0, f"`inputs` must not be empty, got shape {tuple(inputs.shape)}")
    if inputs.is_floating_point() or inputs.is_complex():
        bad = int((~torch.isfinite(inputs)).sum())
        check(bad == 0, f"`inputs` must be finite, got {bad} NaN/Inf entries")
    return inputs


def describe_args(args: tuple[Any, ...]) -> str:
    """ "a (35, 20) int64 tensor and a tuple" for a one-sentence message."""
    parts = [
        f"a {tuple(a.shape)} {str(a.dtype).removeprefix('torch.')} tensor"
        if isinstance(a, Tensor)
        else f"a {type(a).__name__}"
        for a in args
    ]
    return " and ".join(parts) or "no arguments"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def describe_output(output: Any) -> str:
    """ "a tuple of a (35, 20, 10) tensor and a tuple" for a one-sentence message."""
    if isinstance(output, Tensor):
        return f"a {tuple(output.shape)} tensor"
    if isinstance(output, tuple | list):
        inner = " and ".join(
            f"a {tuple(o.shape)} tensor" if isinstance(o, Tensor) else f"a {type(o).__name__}"
            for o in output
        )
        return f"a {type(output).__name__} of {inner or 'nothing'}"
    if isinstance(output, dict):
        return f"a dict with keys {', '.join(map(repr, output))}"
    return f"a {type(output).__name__}"


def call_model(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> Any:
    """model(*args, **kwargs), with a failure inside torch turned into one sentence.

    Raises:
        GradtraceError: if the forward raises on these inputs: mismatched shapes or dtypes
            (RuntimeError), token ids out of an embedding's range (IndexError), and the like.
    """
    try:
        return model(*args, **(kwargs or {}))
    except GradtraceError:  # from gradtrace's own hooks inside the forward: already one sentence
        raise
    except (RuntimeError, IndexError, TypeError, ValueError) as err:
        raise GradtraceError(
            f"`model` failed on {describe_args(args)}: {_first_line(err)}"
        ) from err


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Run the block and leave `model` as it was: buffers, modes, gradients, global RNGs, and
    every module's own attributes (a model that keeps its hidden state, `self.hidden = ...`,
    gets the one it had, not the trace's, which would tie its next backward to our graph)."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.grad) for p in model.parameters()]
    attributes = [(vars(m), dict(vars(m))) for m in model.modules()]
    held = _held_tensors(model, [before for _, before in attributes])
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in buffers:
                buffer.copy_(value)
            for tensor, version, copy in held:  # changed in place: written back
                if tensor._version != version:
                    tensor.copy_(copy)
        for state, before in attributes:
            for key in [key for key in state if key not in before]:
                del state[key]
            for key, item in before.items():
                if state.get(key, _MISSING) is not item:
                    state[key] = item
        for module, training in modes:
            module.training = training
        for p, grad in grads:
            p.grad = grad
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


_MISSING = object()


def _held_tensors(
    model: nn.Module, attributes: list[dict[str, Any]]
) -> list[tuple[Tensor, int, Tensor]]:
    """The tensors the modules hold as plain attributes (directly or in tuples, lists and
    dicts, as a stateful model's `self.hidden = (h, c)`), not parameters or buffers, each with
    its version counter and a copy."""
    own = {id(t) for t in (*model.parameters(), *model.buffers())}
    found: dict[int, Tensor] = {}

    def walk(value: Any, depth: int) -> None:
        if isinstance(value, Tensor):
            if id(value) not in own and not value.is_sparse:
                found.setdefault(id(value), value)
        elif isinstance(value, tuple | list) and depth < 3:
            for item in value:
                walk(item, depth + 1)
        elif isinstance(value, dict) and depth < 3:
            for item in value.values():
                walk(item, depth + 1)

    for saved in attributes:
        for key, value in saved.items():
            if key not in _MODULE_INTERNALS:
                walk(value, 0)
    return [(t, t._version, t.detach().clone()) for t in found.values()]


# torch.nn.Module's own bookkeeping: parameters, buffers and submodules are restored by what
# they are; the hook tables are the tracer's to add to and take from
_MODULE_INTERNALS = frozenset(vars(nn.Module()))


def seed_global(seed: int, device: torch.device) -> None:
    """Set torch's global generator (the CPU's, and `device`'s when it is a GPU) to `seed`.

    Only inside `untouched`, which puts the generators back afterwards; CUDA is not seeded
    lazily, so a process without a GPU in use stays without one.
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)


def first_tensor(output: Any) -> Tensor:
    """The tensor a forward's output stands for: itself, or the first item of a tuple or list.

    Raises:
        GradtraceError: for a PackedSequence or an output that holds no tensor first.
    """
    check(
        not isinstance(output, PackedSequence),
        "`model` returned a PackedSequence, whose sequences end at different steps; return "
        "a padded tensor (torch.nn.utils.rnn.pad_packed_sequence) to trace it",
    )
    if isinstance(output, tuple | list) and output:
        return first_tensor(output[0])
    check(
        isinstance(output, Tensor),
        f"`model` must return a tensor or a tuple whose first item is one, "
        f"got {type(output).__name__}",
    )
    return output


def check_target(loss_fn: LossFn | None, target: Any) -> None:
    """A target only with a loss to be the target of."""
    check(
        target is None or loss_fn is not None,
        f"`target` needs a `loss_fn` to be the target of, got a target "
        f"({describe_output(target)}) and no loss_fn",
    )


def call_loss(loss_fn: LossFn, output: Any, target: Any) -> Tensor:
    """loss_fn(output, target), or loss_fn(output) without a target, checked to be a scalar.

    `output` is what the model returned, a tensor or a tuple or dict holding tensors.

    Raises:
        GradtraceError: if the loss is not a finite scalar tensor.
    """
    try:
        loss = loss_fn(output) if target is None else loss_fn(output, target)
    except GradtraceError:  # a named loss's own sentence, about its output or target
        raise
    except (RuntimeError, IndexError, TypeError, ValueError, AttributeError, KeyError) as err:
        raise GradtraceError(
            f"`loss_fn` raised {type(err).__name__}: {_first_line(err)}; it is called with "
            f"what the model returns, here {describe_output(output)}"
            + ("" if target is None else ", and the target")
        ) from err
    check(
        isinstance(loss, Tensor) and loss.numel() == 1,
        f"`loss_fn` must return a scalar tensor, got "
        f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}",
    )
    check(bool(torch.isfinite(loss).all()), f"`loss_fn` must return a finite loss, got {loss}")
    check(
        loss.requires_grad,
        "`loss_fn` must return a loss that depends on the model's output, got one without gradient",
    )
    return loss.reshape(())
