"""MNIST from the user's files: the four standard IDX files (optionally gzipped) or one .npz.

IDX (LeCun et al., "The MNIST database of handwritten digits") is big-endian: two zero bytes,
a type code (0x08 for unsigned bytes, the only one MNIST uses), the number of dimensions, then
each dimension as a 4-byte integer and the data. Images are magic 0x00000803 (N, 28, 28) and
labels 0x00000801 (N,). A .npz holds x_train, y_train, x_test and y_test (Keras' mnist.npz),
images (N, 28, 28) or (N, 784). Nothing is downloaded: gradtrace reads only the files given.
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gradtrace.errors import GradtraceError, check

IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801
UBYTE = 0x08
PIXELS = 28 * 28
SPLITS = {  # split -> the standard file stems of its images and labels
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

Split = tuple[Tensor, Tensor]  # images (N, 784) uint8 or float32 in [0, 1], labels (N,) int64


def read_mnist(mnist_path: str | Path | None, task: str = "mnist") -> tuple[Split, Split]:
    """The training and test splits of MNIST from a folder of IDX files or one .npz file.

    Args:
        mnist_path: A folder with train-images-idx3-ubyte, train-labels-idx1-ubyte,
            t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally ending .gz), or
            a .npz file with x_train, y_train, x_test and y_test.
        task: The task that asks, for the messages.

    Returns:
        (train, test), each (images (N, 784), labels (N,) int64): images uint8 (0-255) from
        integer files, float32 in [0, 1] from a .npz of floats.

    Raises:
        GradtraceError: naming `mnist_path`, if it is missing, absent or malformed.
    """
    if mnist_path is None:
        raise GradtraceError(
            f"the {task} task reads MNIST from files: give `mnist_path` (--mnist-path), a "
            "folder of the four IDX files or one .npz with x_train, y_train, x_test, y_test"
        )
    check(
        isinstance(mnist_path, str | Path),
        f"`mnist_path` must be a path, got {type(mnist_path).__name__}",
    )
    path = Path(mnist_path)
    check(
        path.exists(),
        f"`mnist_path` must be an existing folder of IDX files or .npz file, got {str(path)!r}, "
        "which does not exist",
    )
    if path.is_dir():
        return _split_idx(path, "train"), _split_idx(path, "test")
    check(
        path.suffix == ".npz",
        f"`mnist_path` must be a folder of IDX files or a .npz file, got the file {path.name!r}",
    )
    return _read_npz(path)


def read_idx(path: Path) -> np.ndarray:
    """The array of one IDX file of unsigned bytes (gzipped when its name ends .gz).

    Raises:
        GradtraceError: naming `mnist_path`, if the header or the size is wrong.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise GradtraceError(f"`mnist_path` file {path.name!r} cannot be read: {error}") from None
    check(
        len(raw) >= 4 and raw[:2] == b"\x00\x00",
        f"`mnist_path` file {path.name!r} is not an IDX file: its magic number does not start "
        "with two zero bytes",
    )
    code, ndim = raw[2], raw[3]
    check(
        code == UBYTE,
        f"`mnist_path` file {path.name!r} must hold unsigned bytes (IDX type 0x08), got type "
        f"0x{code:02x}",
    )
    check(
        len(raw) >= 4 + 4 * ndim,
        f"`mnist_path` file {path.name!r} is cut short inside its header of {ndim} dimensions",
    )
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    check(
        data.size == math.prod(dims),
        f"`mnist_path` file {path.name!r} must hold {math.prod(dims)} bytes of data for its "
        f"shape {dims}, got {data.size}",
    )
    return data.reshape(dims)


def _split_idx(folder: Path, split: str) -> Split:
    images_file, labels_file = (_find(folder, stem) for stem in SPLITS[split])
    images, labels = read_idx(images_file), read_idx(labels_file)
    _check_magic(images_file, IMAGE_MAGIC, images.ndim)
    _check_magic(labels_file, LABEL_MAGIC, labels.ndim)
    check(
        images.shape[1:] == (28, 28),
        f"`mnist_path` file {images_file.name!r} must hold 28 x 28 images, got shape "
        f"{images.shape}",
    )
    return _split(images.reshape(len(images), PIXELS), labels, labels_file.name)


def _find(folder: Path, stem: str) -> Path:
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some mirrors name it
    for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
        if (folder / name).is_file():
            return folder / name
    raise GradtraceError(
        f"`mnist_path` folder {str(folder)!r} has no {stem} (or {stem}.gz); it must hold the "
        "four MNIST IDX files, or give one .npz instead"
    )


def _check_magic(path: Path, magic: int, ndim: int) -> None:
    check(
        ndim == magic & 0xFF,
        f"`mnist_path` file {path.name!r} must have the magic number 0x{magic:08x}, got "
        f"0x{UBYTE << 8 | ndim:08x}",
    )


def _read_npz(path: Path) -> tuple[Split, Split]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in NPZ_KEYS if k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise GradtraceError(
            f"`mnist_path` file {path.name!r} is not a readable .npz: {error}"
        ) from None
    missing = [k for k in NPZ_KEYS if k not in arrays]
    check(
        not missing,
        f"`mnist_path` file {path.name!r} must hold {', '.join(NPZ_KEYS)}, it lacks "
        f"{', '.join(missing)}",
    )
    train = _split(_pixels(arrays["x_train"], path, "train"), arrays["y_train"], path.name)
    test = _split(_pixels(arrays["x_test"], path, "test"), arrays["y_test"], path.name)
    check(
        train[0].dtype == test[0].dtype,
        f"`mnist_path` file {path.name!r} must hold x_train and x_test alike, both integers "
        f"0-255 or both floats in [0, 1], got {arrays['x_train'].dtype} and "
        f"{arrays['x_test'].dtype}",
    )
    return train, test


def _pixels(x: np.ndarray, path: Path, split: str) -> np.ndarray:
    check(
        x.ndim in (2, 3) and math.prod(x.shape[1:]) == PIXELS,
        f"`mnist_path` file {path.name!r} must hold x_{split} of shape (N, 28, 28) or (N, 784), "
        f"got {x.shape}",
    )
    x = x.reshape(len(x), PIXELS)
    integral = np.issubdtype(x.dtype, np.integer)
    low, high = (0, 255) if integral else (0.0, 1.0)
    check(
        (integral or np.issubdtype(x.dtype, np.floating))
        and (x.size == 0 or (x.min() >= low and x.max() <= high)),
        f"`mnist_path` file {path.name!r} must hold x_{split} as integers 0-255 or floats in "
        f"[0, 1], got {x.dtype} values",
    )
    return x.astype(np.uint8 if integral else np.float32)


def _split(images: np.ndarray, labels: np.ndarray, name: str) -> Split:
    check(
        labels.ndim == 1 and len(labels) == len(images) and len(images) > 0,
        f"`mnist_path` file {name!r} must hold one label per image ({len(images)} images), got "
        f"labels of shape {labels.shape}",
    )
    check(
        np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0 and labels.max() <= 9,
        f"`mnist_path` file {name!r} must hold labels 0-9, got {labels.dtype} values from "
        f"{labels.min()} to {labels.max()}",
    )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
