"""The training monitor: gradient flow through time and depth while a model trains.

Monitor(model, optimizer, every=..., log=...)   wraps the user's loop (`monitor.py`)
every / log_spaced / when / never              schedules of monitored steps (`schedule.py`)
chunked forward, boundary hooks                through-time profiles (`chunked.py`)
lag shares                                     gradient by time lag (`lags.py`)
clipping audit                                 what clipping did and its misuse (`clipping.py`)
NaN/Inf origin                                 the replay of a non-finite step (`nonfinite.py`)
writers                                        JSON Lines, TensorBoard (`writers.py`)
GradtraceCallback                              the same inside Lightning (`lightning.py`)
"""

from gradtrace.monitor.monitor import Monitor, NonFiniteError, Step
from gradtrace.monitor.schedule import Schedule, every, log_spaced, never, when
from gradtrace.monitor.writers import JsonlWriter, TensorBoardWriter

__all__ = [
    "JsonlWriter",
    "Monitor",
    "NonFiniteError",
    "Schedule",
    "Step",
    "TensorBoardWriter",
    "every",
    "log_spaced",
    "never",
    "when",
]
