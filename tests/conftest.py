"""Shared test set-up: figures go to files through matplotlib's Agg backend, never a window."""

from __future__ import annotations

import os

# Set before any test module imports matplotlib (gradtrace.plots also selects Agg itself).
os.environ.setdefault("MPLBACKEND", "Agg")

import torch

# The suite runs many small tensor operations: one thread avoids thread start-up and contention
# on a small shared machine (a 300 x 300 Mandelbrot took 11 s on two threads, 0.4 s on one).
torch.set_num_threads(1)
