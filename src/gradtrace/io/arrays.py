"""Arrays from files: every array of an .npz archive, one tensor from a .npy or .pt file, or a
model's argument (a tensor, or a tuple of them such as an LSTM's (h, c)) from a .pt file.

Nothing here runs code from a file: .npy and .npz are read with allow_pickle=False and .pt
with torch.load(weights_only=True).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gradtrace.errors import GradtraceError, check

TENSOR_SUFFIXES = (".npy", ".pt")


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, for a one-sentence error."""
    text = str(err).strip()
    return text.splitlines()[0] if text else "no message"


def load_arrays(path: str | Path, name: str = "path") -> dict[str, np.ndarray]:
    """Every array of an .npz archive, by its name.

    Raises:
        GradtraceError: if the file is missing or not a readable .npz archive.
    """
    path = Path(path)
    check(path.is_file(), f"`{name}` must be an existing .npz file, got {str(path)!r}")
    check(  # before numpy, whose message for other files is about pickles
        zipfile.is_zipfile(path),
        f"`{name}` must be a readable .npz archive, got {str(path)!r} (not a zip archive of "
        "arrays, as numpy.savez writes)",
    )
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, TypeError, zipfile.BadZipFile, EOFError, AttributeError) as err:
        raise GradtraceError(
            f"`{name}` must be a readable .npz archive, got {str(path)!r} ({first_line(err)})"
        ) from None


def array_tensor(
    arrays: dict[str, np.ndarray], key: str, dtype: torch.dtype, name: str = "path"
) -> Tensor:
    """arrays[key] as a real floating tensor of `dtype` on the CPU.

    Raises:
        GradtraceError: if the key is missing or the array is not real and numeric.
    """
    check(key in arrays, f"`{name}` must contain an array {key!r}, found {sorted(arrays)}")
    value = arrays[key]
    check(
        np.issubdtype(value.dtype, np.number) and not np.iscomplexobj(value),
        f"`{name}` array {key!r} must be real and numeric, got dtype {value.dtype}",
    )
    return torch.as_tensor(value.astype(np.float64)).to(dtype)


def _read(path: Path, name: str) -> object:
    check(
        path.suffix in TENSOR_SUFFIXES,
        f"`{name}` must be a {' or '.join(TENSOR_SUFFIXES)} file, got {str(path)!r}",
    )
    check(path.is_file(), f"`{name}` file {str(path)!r} does not exist")
    try:
        if path.suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False))
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # numpy and torch raise many types for a bad file
        raise GradtraceError(
            f"`{name}` file {str(path)!r} could not be read ({type(err).__name__}: "
            f"{first_line(err)}); expected one numeric array or tensor"
        ) from None


def load_tensor(path: str | Path, name: str = "path") -> Tensor:
    """One tensor from a .npy or a .pt file (a single tensor saved with torch.save).

    Raises:
        GradtraceError: on another suffix, a missing or unreadable file, or a file that holds
            something other than one tensor.
    """
    data = _read(Path(path), name)
    check(
        isinstance(data, Tensor),
        f"`{name}` must hold one tensor, got {type(data).__name__}",
    )
    assert isinstance(data, Tensor)  # for the type checker
    return data


Argument = Tensor | tuple["Argument", ...]


def _argument(data: object, name: str) -> Argument:
    if isinstance(data, Tensor):
        return data
    check(
        isinstance(data, tuple | list) and len(data) > 0,
        f"`{name}` must hold a tensor or a tuple of tensors, got {type(data).__name__}",
    )
    assert isinstance(data, tuple | list)  # for the type checker
    return tuple(_argument(item, name) for item in data)


def load_argument(path: str | Path, name: str = "path") -> Argument:
    """A model's argument from a .npy file (a tensor) or a .pt file (a tensor, or a tuple or
    list of them, nested as a forward takes them: an LSTM's hidden state (h, c)).

    Raises:
        GradtraceError: on another suffix, a missing or unreadable file, or a file that holds
            something else.
    """
    return _argument(_read(Path(path), name), name)
