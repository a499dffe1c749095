"""Results as records: one frozen dataclass per result, one codec, one loader.

Every result gradtrace computes is one of these, whichever entry point produced it (the CLI,
the Python API, the monitor or a sweep), and every one writes itself with `to_dict` and reads
back with `from_dict` through `gradtrace.records.codec`, losslessly and as strict JSON:

    gradient_flow   GradientFlow        c(k) through time in one cell, layer and direction
    trace           TraceResult         one GradientFlow per layer of a real model
    sensitivity     SensitivityProfile  ||dy_T/dx_k|| of any sequence model
    depth_profile   DepthProfile        ||dL/dy_l|| through the layers of an MLP
    map_report      MapReport           an iterated map: orbit, fixed points, chaos
    bifurcation     Bifurcation         a map family's attractors by parameter
    mandelbrot      EscapeImage         escape times of z^2 + c
    fixed_points    FixedPoints         fixed points with eigenvalues and type
    rnn_portrait    RNNPortrait         basins and flow of a 1- or 2-unit RNN
    cliff_report    CliffReport         a gradient cliff and descent on it
    monitor_run     MonitorRun          the header of a monitored training run's log
    monitor_step    MonitorStep         one monitored training step: norms, clipping, profiles
    monitor_report  MonitorReport       the verdict and figures of a monitored run
    train_run       TrainRun            one seeded training run: config, metrics, curves
    reproduction    Reproduction        the published claims checked by runs made here

This layer holds data only: it imports nothing of gradtrace but errors and the file helpers.
"""

from gradtrace.records.base import KINDS, Record, from_dict
from gradtrace.records.cliff import CliffReport, CliffRNN, CliffSweep, DescentPath
from gradtrace.records.depth import DepthProfile
from gradtrace.records.files import append, dumps, load, save
from gradtrace.records.fixed_points import FixedPoint, FixedPoints, RNNPortrait
from gradtrace.records.flow import GradientFlow, LyapunovSpectrum, MatrixSpectrum, Theory
from gradtrace.records.maps import (
    Bifurcation,
    EscapeImage,
    Iterates,
    MapCycle,
    MapLyapunov,
    MapReport,
)
from gradtrace.records.monitor import (
    ClipAudit,
    MonitorReport,
    MonitorRun,
    MonitorStep,
    NonFiniteOrigin,
    ParameterStats,
    TimeProfile,
)
from gradtrace.records.reproduce import ClaimResult, Reproduction
from gradtrace.records.trace import SensitivityProfile, TraceResult
from gradtrace.records.training import TrainRun

__all__ = [
    "KINDS",
    "Bifurcation",
    "ClaimResult",
    "CliffRNN",
    "CliffReport",
    "CliffSweep",
    "ClipAudit",
    "DepthProfile",
    "DescentPath",
    "EscapeImage",
    "FixedPoint",
    "FixedPoints",
    "GradientFlow",
    "Iterates",
    "LyapunovSpectrum",
    "MapCycle",
    "MapLyapunov",
    "MapReport",
    "MatrixSpectrum",
    "MonitorReport",
    "MonitorRun",
    "MonitorStep",
    "NonFiniteOrigin",
    "ParameterStats",
    "RNNPortrait",
    "Record",
    "Reproduction",
    "SensitivityProfile",
    "Theory",
    "TimeProfile",
    "TraceResult",
    "TrainRun",
    "append",
    "dumps",
    "from_dict",
    "load",
    "save",
]
