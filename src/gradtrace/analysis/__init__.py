"""Analyses that combine cells, the engine and the theory into reports."""
