"""Shared test set-up: figures go to files through matplotlib's Agg backend, never a window."""

from __future__ import annotations

import os

# Set before any test module imports matplotlib (gradtrace.plots also selects Agg itself).
os.environ.setdefault("MPLBACKEND", "Agg")
