"""A sweep's spec: a TOML file naming the sweep, the fields its runs share and a grid of axes.

    name = "adding-remedies"
    [base]                      # fields shared by every run (any TrainConfig field)
    task = "adding"
    steps = 500
    [grid]                      # axes: every combination is one run
    model = ["tanh", "lstm", "gru"]
    length = [50, 100]
    seed = [0, 1, 2]

Any config field can be an axis (a remedy such as `clip` or `reverse` too). The grid is
expanded in the order the axes are written, the last axis changing fastest, and every run's
config is checked (by `TrainConfig.from_dict` unless told otherwise) when the spec is loaded:
a bad spec is refused in one sentence before any run starts and before any store is opened.
A relative `mnist_path` is read from the working folder, as `gradtrace train` reads it.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradtrace.errors import GradtraceError, check
from gradtrace.store import config_key

Validate = Callable[[dict[str, Any]], dict[str, Any]]
TOP_KEYS = ("name", "base", "grid")
MAX_RUNS = 100_000  # a grid larger than this is a typo, and would take a while to check
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")  # it names the store's file


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: its name and every run's checked config.

    Attributes:
        name: The sweep's name (letters, digits, ".", "_", "-"); the default store is
            NAME.sqlite beside the spec.
        base: The fields every run shares, as written.
        grid: The axes, each a tuple of values, as written.
        configs: Every run's full config (defaults filled in), in the grid's order.
        keys: Each run's key in the store (`gradtrace.store.config_key` of its config).
        labels: Each run's axis values in words, e.g. "model='lstm', seed=0".
        source: The TOML file the spec was read from, if any.
    """

    name: str
    base: dict[str, Any]
    grid: dict[str, tuple[Any, ...]]
    configs: tuple[dict[str, Any], ...]
    keys: tuple[str, ...]
    labels: tuple[str, ...]
    source: str | None = None

    def default_store(self) -> Path:
        """NAME.sqlite in the spec's folder (the working folder for a spec not from a file)."""
        folder = Path(self.source).parent if self.source is not None else Path()
        return folder / f"{self.name}.sqlite"


def train_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict checked and filled in by `gradtrace.training.TrainConfig`."""
    from gradtrace.training import TrainConfig

    return TrainConfig.from_dict(config).to_dict()


def load_spec(path: str | Path, *, validate: Validate | None = None) -> SweepSpec:
    """Read and check a sweep's TOML spec (see the module docstring for its form).

    Args:
        path: The .toml file.
        validate: Checks one run's config and returns it in full, raising `GradtraceError`
            naming the field; default `train_config` (`TrainConfig.from_dict`).

    Returns:
        The spec, every run's config checked.

    Raises:
        GradtraceError: if the file is missing or is not TOML (with the line), a key or an
            axis is unknown, an axis is empty, or any run's config is refused.
    """
    path = Path(path)
    check(
        path.is_file(),
        f"`spec` must be an existing TOML file, got {str(path)!r}, which "
        f"{'is a folder' if path.is_dir() else 'does not exist'}",
    )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise GradtraceError(f"`spec` {str(path)!r} is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise GradtraceError(f"`spec` {str(path)!r} is not a text file") from None
    return parse_spec(data, source=str(path), validate=validate)


def parse_spec(
    data: dict[str, Any], *, source: str | None = None, validate: Validate | None = None
) -> SweepSpec:
    """A spec from its parsed TOML (or any dict of the same form).

    Args:
        data: {"name": ..., "base": {...}, "grid": {axis: [values]}}; without a name, the
            source file's stem names the sweep.
        source: Where `data` came from, for messages and the default store.
        validate: As for `load_spec`.

    Raises:
        GradtraceError: as for `load_spec`.
    """
    where = f"the spec {source!r}" if source is not None else "the spec"
    for key in data:
        check(
            key in TOP_KEYS,
            f"unknown key {key!r} at the top of {where}; the keys are {', '.join(TOP_KEYS)} "
            "(a field every run shares goes in [base])",
        )
    name = data.get("name", Path(source).stem if source is not None else None)
    check(
        isinstance(name, str) and NAME.match(name) is not None,
        f"`name` in {where} must be a name of letters, digits, '.', '_' and '-', got {name!r}",
    )
    base = data.get("base", {})
    grid = data.get("grid", {})
    check(isinstance(base, dict), f"[base] in {where} must be a table, got {base!r}")
    check(isinstance(grid, dict), f"[grid] in {where} must be a table, got {grid!r}")
    axes = {axis: _axis(axis, values, base, where) for axis, values in grid.items()}
    combos = list(itertools.product(*axes.values()))
    check(
        len(combos) <= MAX_RUNS,
        f"[grid] in {where} makes {len(combos)} runs, more than the {MAX_RUNS} a sweep takes",
    )
    check_one = validate or train_config
    configs, keys, labels = [], [], []
    first: dict[str, int] = {}
    for i, combo in enumerate(combos):
        label = ", ".join(f"{a}={v!r}" for a, v in zip(axes, combo, strict=True)) or "base only"
        try:
            config = check_one({**base, **dict(zip(axes, combo, strict=True))})
        except GradtraceError as err:
            message = str(err).rstrip(".")
            raise GradtraceError(
                f"{where}, run {i + 1} of {len(combos)} ({label}): {message}"
            ) from None
        key = config_key(config)
        check(
            key not in first,
            f"{where} gives one run twice, as run {first.get(key, 0) + 1} and run {i + 1} "
            f"({label}); list each value of an axis once",
        )
        first[key] = i
        configs.append(config)
        keys.append(key)
        labels.append(label)
    return SweepSpec(
        str(name or "sweep"), dict(base), axes, tuple(configs), tuple(keys), tuple(labels), source
    )


def configs_spec(
    configs: list[dict[str, Any]], *, name: str = "sweep", validate: Validate | None = None
) -> SweepSpec:
    """A spec of the runs in `configs`, each checked; a config given twice is kept once.

    Raises:
        GradtraceError: naming the first config refused, by its place in the list.
    """
    check(
        isinstance(configs, list | tuple),
        f"`configs` must be a list of config dicts, got {type(configs).__name__}",
    )
    check(
        isinstance(name, str) and NAME.match(name) is not None,
        f"`name` must be a name of letters, digits, '.', '_' and '-', got {name!r}",
    )
    check_one = validate or train_config
    runs: dict[str, tuple[dict[str, Any], str]] = {}
    for i, config in enumerate(configs):
        try:
            full = check_one(config)
        except GradtraceError as err:
            raise GradtraceError(f"`configs` item {i}: {str(err).rstrip('.')}") from None
        runs.setdefault(config_key(full), (full, f"configs[{i}]"))
    return SweepSpec(
        name=name,
        base={},
        grid={},
        configs=tuple(c for c, _ in runs.values()),
        keys=tuple(runs),
        labels=tuple(label for _, label in runs.values()),
    )


def _axis(axis: str, values: Any, base: dict[str, Any], where: str) -> tuple[Any, ...]:
    check(
        isinstance(values, list),
        f"[grid] axis `{axis}` in {where} must be a list of values, got {values!r}; a value "
        "every run shares goes in [base]",
    )
    check(
        len(values) > 0,
        f"[grid] axis `{axis}` in {where} must list at least one value, got []",
    )
    check(
        axis not in base,
        f"`{axis}` in {where} is both in [base] and an axis of [grid]; give it in one of them",
    )
    return tuple(values)
