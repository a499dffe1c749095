"""Dynamics: an RNN's forward pass read as an iterated map, and what that means for gradients.

Iterated one-dimensional maps (orbits, fixed points, cycles, Lyapunov exponents, bifurcations),
the Mandelbrot set, fixed points and basins of attraction of small tanh RNNs, and the gradient
cliffs that appear where a parameter moves the final state across a basin boundary.

This layer builds on `gradtrace.core` (the Jacobian-product engine) and on plain tanh cells;
it computes results as frozen dataclasses and draws nothing (see `gradtrace.plots.dynamics`).
"""
