"""The one path from a torch module to a cell's weights.

`weights_from_torch(module, layer, direction)` reads the parameters of an nn.RNNCell,
nn.LSTMCell or nn.GRUCell, or of one layer and direction of an nn.RNN, nn.LSTM or nn.GRU (any
num_layers, bidirectional, LSTM proj_size), in PyTorch's layout:

    weight_ih_l{l}[_reverse]   W_ih, (gates H, I_l): layer 0 reads the input, layer l > 0 reads
                               cat(h^(l-1, forward), h^(l-1, reverse)), D P features
    weight_hh_l{l}[_reverse]   W_hh, (gates H, P)
    bias_ih / bias_hh          summed into one bias for RNN and LSTM; kept apart for the GRU,
                               whose b_hn sits inside r_t * (...)
    weight_hr_l{l}[_reverse]   the LSTM projection W_proj (P, H)

The tensors are detached, not copied: gradtrace never writes to them, so the module is left as
it was.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradtrace.cells.gru import GRUWeights
from gradtrace.cells.lstm import LSTMWeights
from gradtrace.cells.registry import Weights
from gradtrace.cells.rnn import RNNWeights
from gradtrace.errors import GradtraceError, check

MODULE_CELLS: dict[type[nn.Module], str] = {
    nn.RNN: "rnn",
    nn.LSTM: "lstm",
    nn.GRU: "gru",
    nn.RNNCell: "rnn",
    nn.LSTMCell: "lstm",
    nn.GRUCell: "gru",
}


def cell_name(module: object) -> str | None:
    """ "rnn", "lstm" or "gru" for a recurrent torch module (or a subclass); else None."""
    for kind, name in MODULE_CELLS.items():
        if isinstance(module, kind):
            return name
    return None


def weights_from_torch(module: nn.Module, layer: int = 0, direction: int = 0) -> Weights:
    """The weights of one layer and direction of a recurrent torch module, as a cell's weights.

    Args:
        module: An nn.RNN / nn.LSTM / nn.GRU, or an nn.RNNCell / nn.LSTMCell / nn.GRUCell.
        layer: 0..num_layers-1 (0 for a cell).
        direction: 0 (forward) or 1 (reverse, bidirectional modules only).

    Returns:
        RNNWeights (with the module's nonlinearity), LSTMWeights or GRUWeights; biases are
        zeros when the module has none.

    Raises:
        GradtraceError: if `module` is not one of those, or `layer` / `direction` are out of
            range.

    Example:
        >>> w = weights_from_torch(torch.nn.LSTM(3, 8, num_layers=2), layer=1)
        >>> w.input_size, w.hidden_size
        (8, 8)
    """
    kind = cell_name(module)
    if kind is None:
        raise GradtraceError(
            "`module` must be an nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell or nn.GRUCell, "
            f"got {type(module).__name__}"
        )
    if isinstance(module, nn.RNNBase):
        D = 2 if module.bidirectional else 1
        layers = module.num_layers
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
    else:
        D, layers, suffix = 1, 1, ""
    check(
        isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < layers,
        f"`layer` must be in 0..{layers - 1} for this {type(module).__name__}, got {layer!r}",
    )
    check(
        isinstance(direction, int) and not isinstance(direction, bool) and 0 <= direction < D,
        f"`direction` must be in 0..{D - 1} for this {type(module).__name__}, got {direction!r}",
    )

    def weight(name: str) -> Tensor | None:  # getattr: a parametrised weight as it is used
        value = getattr(module, name, None)
        return value.detach() if isinstance(value, Tensor) else None

    W_ih, W_hh = weight("weight_ih" + suffix), weight("weight_hh" + suffix)
    assert W_ih is not None and W_hh is not None
    b_ih = weight("bias_ih" + suffix)
    b_hh = weight("bias_hh" + suffix)
    b_ih = W_ih.new_zeros(W_ih.shape[0]) if b_ih is None else b_ih
    b_hh = W_hh.new_zeros(W_hh.shape[0]) if b_hh is None else b_hh
    if kind == "rnn":
        nonlinearity = getattr(module, "nonlinearity", "tanh")
        return RNNWeights(W_hh, W_ih, b_ih + b_hh, nonlinearity)
    if kind == "lstm":
        return LSTMWeights(W_ih, W_hh, b_ih + b_hh, weight("weight_hr" + suffix))
    return GRUWeights(W_ih, W_hh, b_ih, b_hh)
