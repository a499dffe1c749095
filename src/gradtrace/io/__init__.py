"""Files in and out, and the device: what the CLI, the explorer and sweeps share.

    files     output paths checked before the work; atomic writes
    devices   "auto" / "cpu" / "cuda" and the dtype names
    arrays    .npz archives and single tensors from .npy / .pt files
    models    a model from a factory, a torch.save'd module or a TorchScript file

Errors name the Python argument (`model`, `path`, ...); the CLI maps them to its flags.
"""
