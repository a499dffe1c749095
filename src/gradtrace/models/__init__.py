"""The remedies' sequence models for long-term-dependency tasks, real `torch.nn` modules.

MODELS          the models by name (also the CLI's names), `registry.py`
build_model     a seeded model by name: x (B, T, I) -> y (B, T, O)
describe        a model's recurrence and initialisation, in words
footprint       a model's step shape (gates, state, Python loop), to price work up front
SequenceModel   the module every model is: a recurrent core and a per-step readout, with
                its recurrence one step at a time for `gradtrace.trace_step`
LoopRNN         the core of the sigmoid and skip RNNs, a loop over one step
"""

from gradtrace.models.loops import LoopRNN
from gradtrace.models.registry import MODELS, Footprint, build_model, describe, footprint
from gradtrace.models.sequence import SequenceModel

__all__ = [
    "MODELS",
    "Footprint",
    "LoopRNN",
    "SequenceModel",
    "build_model",
    "describe",
    "footprint",
]
