"""Strict JSON for every record gradtrace writes: non-finite numbers become null.

Python's `json` writes -inf as `-Infinity`, which is not JSON; an exactly zero product's log is
-inf, so every writer passes its record through `strict_json` first.
"""

from __future__ import annotations

import json
import math
from typing import Any


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, so that it is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """json.dumps of `strict_json(value)`, refusing anything that is still not JSON."""
    return json.dumps(strict_json(value), indent=indent, allow_nan=False)
