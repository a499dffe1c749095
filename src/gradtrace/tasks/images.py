"""Images read pixel by pixel: scikit-learn's 8x8 digits and MNIST, plain or permuted.

An image becomes a sequence of its pixels in row-major order (pixel (r, c) at step r * W + c),
one input channel scaled to [0, 1], classified at the last step into 10 classes. The permuted
tasks reorder the steps of every image by one fixed permutation (Le, Jaitly, Hinton 2015, "A
simple way to initialize recurrent networks of rectified linear units", for MNIST), which
scatters neighbouring pixels across the sequence.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from gradtrace.errors import GradtraceError, check, check_seed
from gradtrace.tasks.mnist_files import Split, read_mnist
from gradtrace.tasks.task import Task, TaskOptions

CLASSES = 10
DIGITS_PIXELS, MNIST_PIXELS = 64, 784
# the image tasks take one step per pixel: their length is fixed
FIXED_LENGTHS = {
    "digits": DIGITS_PIXELS,
    "permuted-digits": DIGITS_PIXELS,
    "mnist": MNIST_PIXELS,
    "permuted-mnist": MNIST_PIXELS,
}
DIGITS_SAMPLES, DIGITS_TEST = 1797, 360  # about a fifth held out
DIGITS_SPLIT_SEED = 0  # seeds the one shuffle that splits the digits into train and test


def digits(length: int, options: TaskOptions) -> Task:
    """scikit-learn's 8x8 digits, pixel by pixel: 64 steps of one channel, 10 classes.

    The 1797 images of `sklearn.datasets.load_digits` (shipped inside scikit-learn, read with no
    network) are shuffled once by `torch.randperm` seeded with 0: the first 1437 are the
    training split, the last 360 the test split. x is (B, 64, 1) float32, the pixels' grey
    levels 0-16 divided by 16, row by row; y is (B,) int64, the digit 0-9. `sample` draws
    images from the training split uniformly with replacement. The dependency is 63 (the first
    pixel, read at the last step), the same reversed.

    Baseline: chance, cross-entropy ln 10 (the classes hold 174 to 183 images each).

    Example, the sample `make_task("digits", 64).sample(1, torch.Generator().manual_seed(0))`,
    a 7, its first two rows of pixels::

        x[0, :16, 0] * 16 = [0, 0, 3, 12, 16, 13, 0, 0,  0, 1, 14, 9, 10, 13, 0, 0],  y[0] = 7

    Raises:
        GradtraceError: if `length` is not 64, or scikit-learn is not installed.
    """
    _check_length("digits", length, DIGITS_PIXELS)
    return _image_task("digits", length, _digits(), 1 / 16, None)


def permuted_digits(length: int, options: TaskOptions) -> Task:
    """The digits with their 64 pixels in one fixed order drawn by `options.permutation_seed`.

    Step t of a sequence is pixel perm[t] of the image, perm = torch.randperm(64) seeded with
    the seed; otherwise as `digits` (the same split, baseline ln 10, dependency 63).

    Example, seed 0 for both the permutation and the batch: the same 7 as `digits`' example,
    its steps now pixels perm = [44, 46, 17, 3, 47, 21, ...]::

        x[0, :6, 0] * 16 = [7, 0, 0, 12, 0, 10],  y[0] = 7
    """
    _check_length("permuted-digits", length, DIGITS_PIXELS)
    perm = pixel_permutation(DIGITS_PIXELS, options.permutation_seed)
    return _image_task("permuted-digits", length, _digits(), 1 / 16, perm)


def mnist(length: int, options: TaskOptions) -> Task:
    """Sequential MNIST (Le et al. 2015) from the user's files: 784 steps of one channel.

    x is (B, 784, 1) float32, the grey levels 0-255 divided by 255 (floats of a .npz as they
    are), row by row; y is (B,) int64, the digit. The training split is the files' training set,
    the test split their test set (`test_set` returns its first `size` images). The dependency
    is 783, the same reversed. Baseline: chance, ln 10.

    Raises:
        GradtraceError: if `length` is not 784, or `options.mnist_path` is missing or malformed.
    """
    _check_length("mnist", length, MNIST_PIXELS)
    data = read_mnist(options.mnist_path, "mnist")
    return _image_task("mnist", length, data, _mnist_scale(data), None)


def permuted_mnist(length: int, options: TaskOptions) -> Task:
    """MNIST with its 784 pixels in one fixed order drawn by `options.permutation_seed`."""
    _check_length("permuted-mnist", length, MNIST_PIXELS)
    perm = pixel_permutation(MNIST_PIXELS, options.permutation_seed)
    data = read_mnist(options.mnist_path, "permuted-mnist")
    return _image_task("permuted-mnist", length, data, _mnist_scale(data), perm)


def pixel_permutation(size: int, seed: int) -> Tensor:
    """The fixed permutation of the permuted tasks: torch.randperm(size) seeded with `seed`.

    Raises:
        GradtraceError: if `seed` is not a whole number from 0 to 2**63 - 1, naming
            `permutation_seed`.
    """
    seed = check_seed(seed, "permutation_seed")
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))


def _image_task(
    name: str, length: int, data: tuple[Split, Split], scale: float, perm: Tensor | None
) -> Task:
    """Images (N, T) stored as grey levels, each level times `scale` a pixel in [0, 1]."""
    (train_x, train_y), (test_x, test_y) = data
    pixels = train_x.shape[1]

    def sequences(images: Tensor) -> Tensor:
        x = images if perm is None else images[:, perm]  # (B, T)
        return (x.to(torch.float32) * scale).unsqueeze(-1)  # (B, T, 1)

    def draw(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = torch.randint(0, len(train_x), (batch_size,), generator=generator)
        return sequences(train_x[rows]), train_y[rows]

    def draw_test(size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return sequences(test_x[:size]), test_y[:size].clone()

    return Task(
        name=name,
        length=length,
        input_size=1,
        output_size=CLASSES,
        readout="last",
        kind="classification",
        dependency=pixels - 1,
        baseline=math.log(CLASSES),
        metric_name="accuracy",
        reversed_dependency=pixels - 1,
        draw=draw,
        draw_test=draw_test,
        steps=pixels,
    )


def _check_length(name: str, length: int, pixels: int) -> None:
    check(
        length == pixels,
        f"`length` of the {name} task is fixed at {pixels} (one step per pixel), got {length}",
    )


@functools.cache
def _digits() -> tuple[Split, Split]:
    """The digits' split as grey levels 0-16 in uint8, read once per process."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise GradtraceError(
            "the digits tasks need scikit-learn, which is not installed: run "
            "pip install 'gradtrace[digits]' (or pip install scikit-learn)"
        ) from None
    bunch = load_digits()
    images = torch.from_numpy(bunch.data).to(torch.uint8)  # (1797, 64), exact: integers 0-16
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    train, test = order[:-DIGITS_TEST], order[-DIGITS_TEST:]
    return (images[train], labels[train]), (images[test], labels[test])


def _mnist_scale(data: tuple[Split, Split]) -> float:
    """1/255 for grey levels in bytes; 1 for a .npz of floats already in [0, 1]."""
    return 1 / 255 if data[0][0].dtype == torch.uint8 else 1.0
