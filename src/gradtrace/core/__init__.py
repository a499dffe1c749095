"""Core mathematics: activations, weight constructors, the Jacobian-product engine, theory.

Pure functions on tensors; nothing here knows about plots, the CLI or training.

Shape letters used throughout the package:
    T  time steps (or layers, for depth)      B  batch
    I  input features                         H  hidden units
    S  state size of a cell (H for RNN and GRU, 2H for LSTM's (h, c))
    K  number of Lyapunov exponents
"""
