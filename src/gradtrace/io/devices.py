"""Device and dtype choice: one default for every entry point.

"auto" is the default everywhere (curve, trace, the explorer and sweeps): a CUDA GPU when torch
sees one, the CPU otherwise. Asking for CUDA on a machine without one is refused in one sentence
rather than failing inside torch.
"""

from __future__ import annotations

import torch

from gradtrace.errors import GradtraceError, check

DEVICES = ("auto", "cpu", "cuda")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def choose_device(device: str | torch.device = "auto", name: str = "device") -> torch.device:
    """The torch.device for "auto", "cpu", "cuda" or "cuda:N".

    Raises:
        GradtraceError: on another name, or CUDA without a GPU.
    """
    if isinstance(device, torch.device):
        device = str(device)
    check(
        isinstance(device, str) and (device in DEVICES or device.startswith("cuda:")),
        f"`{name}` must be one of {', '.join(DEVICES)} (or cuda:N), got {device!r}",
    )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check(
        device == "cpu" or torch.cuda.is_available(),
        f"`{name}` {device!r} needs a CUDA GPU and a CUDA build of torch, and neither is "
        "available here; use cpu or auto",
    )
    try:
        return torch.device(device)
    except RuntimeError:
        raise GradtraceError(
            f"`{name}` must be cpu, cuda, cuda:N or auto, got {device!r}"
        ) from None


def choose_dtype(dtype: str | torch.dtype = "float64", name: str = "dtype") -> torch.dtype:
    """torch.float64 or torch.float32 from its name (or itself).

    Raises:
        GradtraceError: on any other dtype.
    """
    if isinstance(dtype, torch.dtype):
        check(
            dtype in DTYPES.values(),
            f"`{name}` must be float64 or float32, got {dtype}",
        )
        return dtype
    check(dtype in DTYPES, f"`{name}` must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """ "float64" for torch.float64, and so on."""
    return str(dtype).removeprefix("torch.")
