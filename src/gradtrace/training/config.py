"""The configuration of one training run, checked field by field before anything runs.

A `TrainConfig` is what `gradtrace train` parses, what `gradtrace.train` takes, what a sweep
expands its grid into and what a run's record carries; its `key()` (a hash of its canonical
JSON) is the run's identity in a sweep's store.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradtrace.errors import GradtraceError, check
from gradtrace.models import MODELS
from gradtrace.records.training import config_key
from gradtrace.tasks import TASKS, default_length

OPTIMIZERS = ("adam", "sgd", "rmsprop")
CLIPS = ("norm", "value", "none")
MNIST_TASKS = ("mnist", "permuted-mnist")


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        task: A name in `gradtrace.tasks.TASKS` ("adding", "copy", "digits", ...).
        model: A name in `gradtrace.models.MODELS` ("tanh", "irnn", "lstm", "gru", ...).
        length: The task's sequence length T.
        hidden_size: Hidden units H.
        batch_size: Sequences per step B.
        steps: Optimizer steps.
        optimizer: "adam", "sgd" (with `momentum`) or "rmsprop".
        lr: Learning rate.
        momentum: SGD's momentum (and RMSProp's); ignored by Adam.
        clip: "norm" (clip_grad_norm_ at `max_norm`), "value" (clip_grad_value_ at
            `max_norm`) or "none".
        max_norm: The clipping threshold.
        reverse: Feed every sequence backwards in time (Sutskever, Vinyals, Le 2014).
        seed: Seeds the model's initialisation and every batch.
        eval_every: Steps between evaluations on the fixed test set.
        test_size: Sequences in the test set (data-set tasks use their own test split).
        monitor_every: Steps between the monitor's records; 0 chooses about 50 per run.
        trace_size: Test sequences the exact gradient picture is measured on.
        target_loss: Stop early once the test loss is at or below this (the metric
            `steps_to_target` says when); None trains every step.
        device: "auto" (a GPU when present), "cpu" or "cuda[:n]".
        mnist_path: The MNIST files for the mnist tasks (IDX files or one .npz).
    """

    task: str
    model: str
    length: int = 100
    hidden_size: int = 64
    batch_size: int = 64
    steps: int = 1000
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    clip: str = "norm"
    max_norm: float = 1.0
    reverse: bool = False
    seed: int = 0
    eval_every: int = 100
    test_size: int = 1000
    monitor_every: int = 0
    trace_size: int = 8
    target_loss: float | None = None
    device: str = "cpu"
    mnist_path: str | None = None

    def __post_init__(self) -> None:
        _check_names(self)
        for name in ("length", "hidden_size", "batch_size", "steps", "eval_every", "test_size"):
            _check_int(name, getattr(self, name), 1)
        _check_int("length", self.length, 2)
        _check_int("seed", self.seed, 0)
        _check_int("monitor_every", self.monitor_every, 0)
        _check_int("trace_size", self.trace_size, 1)
        for name in ("lr", "max_norm"):
            value = getattr(self, name)
            check(
                _is_number(value) and value > 0 and math.isfinite(value),
                f"`{name}` must be a positive finite number, got {value!r}",
            )
        check(
            self.target_loss is None or (_is_number(self.target_loss) and self.target_loss > 0),
            f"`target_loss` must be a positive number or None, got {self.target_loss!r}",
        )
        check(
            _is_number(self.momentum) and 0 <= self.momentum < 1,
            f"`momentum` must be a number in [0, 1), got {self.momentum!r}",
        )
        check(
            self.optimizer in OPTIMIZERS,
            f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
        )
        check(self.clip in CLIPS, f"`clip` must be one of {', '.join(CLIPS)}, got {self.clip!r}")
        check(
            isinstance(self.reverse, bool), f"`reverse` must be true or false, got {self.reverse!r}"
        )
        check(isinstance(self.device, str), f"`device` must be a device name, got {self.device!r}")

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """A config from a dict (a TOML table, JSON, the CLI's options); missing fields default
        (a missing `length` to the task's own: 64 for digits, 784 for mnist, else 100).

        Raises:
            GradtraceError: naming the first key that is unknown or whose value does not fit.
        """
        check(isinstance(data, dict), f"a run's config must be a table, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            check(
                key in known,
                f"unknown config field {key!r}; the fields are {', '.join(known)}",
            )
        check("task" in data, "a run's config needs a `task`, e.g. task = 'adding'")
        check("model" in data, "a run's config needs a `model`, e.g. model = 'lstm'")
        values = dict(data)
        if "length" not in values and values["task"] in TASKS:  # digits 64, mnist 784
            values["length"] = default_length(values["task"])
        for name in (
            "lr",
            "momentum",
            "max_norm",
            "target_loss",
        ):  # TOML and JSON may write 1 for 1.0
            if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
                values[name] = float(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready."""
        return dataclasses.asdict(self)

    def key(self) -> str:
        """The run's identity: sha256 of its canonical JSON (sorted keys), in hex."""
        return config_key(self.to_dict())

    def label(self) -> str:
        """A short name for tables and legends, e.g. "lstm adding T=100 seed 0"."""
        extra = " reversed" if self.reverse else ""
        return f"{self.model} {self.task}{extra} T={self.length} seed {self.seed}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int) -> None:
    check(
        isinstance(value, int) and not isinstance(value, bool) and value >= low,
        f"`{name}` must be a whole number >= {low}, got {value!r}",
    )


def _check_names(config: TrainConfig) -> None:
    check(
        config.task in TASKS,
        f"`task` must be one of {', '.join(sorted(TASKS))}, got {config.task!r}",
    )
    check(
        config.model in MODELS,
        f"`model` must be one of {', '.join(sorted(MODELS))}, got {config.model!r}",
    )
    if config.task in MNIST_TASKS:
        path = config.mnist_path
        if path is None:
            raise GradtraceError(
                f"the {config.task} task reads MNIST from files: give `mnist_path`, "
                "a folder of the IDX files or one .npz"
            )
        check(
            Path(path).exists(),
            f"`mnist_path` must be an existing folder or .npz file, got {path!r}, which does "
            "not exist",
        )
