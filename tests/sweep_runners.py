"""Cheap, deterministic runners for the sweep and store tests, importable by worker processes.

Put this folder on PYTHONPATH for workers that are not the test process's children by spawn
(a Dask cluster, a sweep in a subprocess).

`arithmetic` stands in for `gradtrace.training.run_config`: it takes a checked config and
returns a record of the same shape in closed form, so a test knows every number it should
find: final_test_loss = 1 / (length * (seed + 1)), best_test_loss half of it, and the curve
test_loss[i] = final_test_loss * (steps - i) for i < 3. A run with lr >= 1 diverges (its
max_grad_norm is +Infinity, steps_to_target NaN); a run with hidden_size 13 raises. Each run
sleeps GRADTRACE_TEST_RUN_SECONDS first (default 0), so that a test can catch a sweep mid-way.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

SLEEP_VARIABLE = "GRADTRACE_TEST_RUN_SECONDS"


def final_loss(config: dict[str, Any]) -> float:
    """The closed form `arithmetic` reports as final_test_loss."""
    return 1.0 / (config["length"] * (config["seed"] + 1))


def arithmetic(config: dict[str, Any]) -> dict[str, Any]:
    """A run's record in closed form (see the module docstring)."""
    time.sleep(float(os.environ.get(SLEEP_VARIABLE, "0")))
    if config["hidden_size"] == 13:
        raise RuntimeError("thirteen hidden units are unlucky")
    loss = final_loss(config)
    diverged = config["lr"] >= 1
    return {
        "format": "gradtrace.train_run/1",
        "config": config,
        "status": "diverged" if diverged else "finished",
        "steps": config["steps"],
        "seconds": 0.001,
        "metric": "mse",
        "metrics": {
            "final_test_loss": loss,
            "best_test_loss": loss / 2,
            "max_grad_norm": math.inf if diverged else 1.0,
            "steps_to_target": math.nan,
        },
        "curves": {
            "step": [0, 1, 2],
            "test_loss": [loss * (config["steps"] - i) for i in range(3)],
        },
    }


def first_failure_last(config: dict[str, Any]) -> dict[str, Any]:
    """`arithmetic`, with the run hidden_size 13, lr < 1 held back half a second: with two
    workers it fails after the spec's later failing run."""
    if config["hidden_size"] == 13 and config["lr"] < 1:
        time.sleep(0.5)
    return arithmetic(config)
