"""Every panel by name: its parameters and its function, the keys being the API's paths.

`/api/<name>?param=value...` parses the query with the panel's `params` and calls `compute`
with the checked values; the page builds each panel's controls from the same `params`
(`/api/schema`). The runs panels read the folder and the store given at start-up, bound here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from gradtrace.explorer import panels_activation, panels_depth, panels_dynamics, panels_rnn
from gradtrace.explorer.panels_runs import (
    RUN_PARAMS,
    RUNS_PARAMS,
    SWEEPS_PARAMS,
    RunSources,
    run_panel,
    runs_panel,
    sweeps_panel,
)
from gradtrace.explorer.params import Param


@dataclass(frozen=True)
class Panel:
    """One panel: its checked parameters and the plain function of them it shows."""

    params: tuple[Param, ...]
    compute: Callable[..., dict[str, Any]]


def panels(sources: RunSources | None = None) -> dict[str, Panel]:
    """The explorer's panels, the runs panels reading `sources` (none given: empty)."""
    sources = sources or RunSources()
    dyn = panels_dynamics
    return {
        "activation": Panel(panels_activation.PARAMS, panels_activation.activation_panel),
        "rnn": Panel(panels_rnn.PARAMS, panels_rnn.rnn_panel),
        "depth": Panel(panels_depth.PARAMS, panels_depth.depth_panel),
        "map": Panel(dyn.MAP_PARAMS, dyn.map_panel),
        "bifurcation": Panel(dyn.BIFURCATION_PARAMS, dyn.bifurcation_panel),
        "basins": Panel(dyn.BASIN_PARAMS, dyn.basins_panel),
        "cliff": Panel(dyn.CLIFF_PARAMS, dyn.cliff_panel),
        "runs": Panel(RUNS_PARAMS, partial(runs_panel, sources)),
        "run": Panel(RUN_PARAMS, partial(run_panel, sources)),
        "sweeps": Panel(SWEEPS_PARAMS, partial(sweeps_panel, sources)),
    }


def schema(registry: dict[str, Panel]) -> dict[str, list[dict[str, Any]]]:
    """Each panel's parameters as the page builds its controls from them."""
    return {name: [p.spec() for p in panel.params] for name, panel in registry.items()}
