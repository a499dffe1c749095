"""Long-term-dependency tasks: layouts, distributions, baselines, data sets and reversal.

References, each independent of the code under test:
- closed forms: Var(U1 + U2) = 1/6, Var((U1 + U2)/2) = 1/24, Var(U1 U2) = 7/144, chance ln K,
  10 ln 8 / (T + 20), each matched by the trivial predictor's empirical loss on 200,000 draws
  within 5 standard errors computed from the same draws (a chance of about 6e-7 to fail);
- counts: a frequency p-hat of n draws is within 5 sqrt(p (1 - p) / n) of p; a chi-square
  statistic of k categories stays below its mean k - 1 plus 6 of its standard deviations
  sqrt(2 (k - 1)); the plug-in entropy of K equally likely classes is within
  (K - 1 + 6 sqrt(2 (K - 1))) / (2 n) of ln K (2 n (ln K - H) is asymptotically chi-square);
- the inputs themselves: targets recomputed from x in float64 (to float32 rounding, 1.2e-7),
  labels decoded from the one-hot symbols (exactly), lags read off the marked steps (exactly);
- data: `sklearn.datasets.load_digits` read here and split by `torch.randperm` with seed 0;
  MNIST files in IDX and .npz written here by a writer of this file's own.
"""

from __future__ import annotations

import gzip
import math
import socket
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradtrace
from gradtrace.errors import GradtraceError
from gradtrace.tasks import TASKS, Task, make_task, pixel_permutation, reverse_inputs
from gradtrace.tasks import images as images_module
from gradtrace.tasks.symbols import ORDER_WINDOWS, order_windows

N = 200_000  # draws behind every distribution and baseline check
SIGMAS = 5.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chi_square_bound(k: int) -> float:
    return (k - 1) + 6 * math.sqrt(2 * (k - 1))


def chi_square(counts: torch.Tensor) -> float:
    """The chi-square statistic of counts against equal probabilities."""
    counts = counts.to(torch.float64)
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


def relevant_steps(task: Task, x: torch.Tensor) -> torch.Tensor:
    """(B, k) the steps a sample's answer depends on, read off x alone."""
    if task.name.startswith("temporal-order"):
        hot = x.argmax(-1)  # (B, T)
        relevant = (hot == 4) | (hot == 5)  # X or Y
    else:
        relevant = x[:, :, 1] == 1  # the markers
    return torch.nonzero(relevant)[:, 1].reshape(len(x), -1)


# --- baselines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mean", "baseline"),
    [("adding", 1.0, 1 / 6), ("adding-mean", 0.5, 1 / 24), ("multiplication", 0.25, 7 / 144)],
    ids=["adding", "adding-mean", "multiplication"],
)
def test_the_trivial_predictor_of_a_regression_task_has_the_closed_form_mse(
    name: str, mean: float, baseline: float
) -> None:
    task = make_task(name, 20)
    assert task.baseline == baseline  # the closed form, exactly
    x, y = task.sample(N, gen())
    squared = (y.to(torch.float64) - mean) ** 2
    mse, se = float(squared.mean()), float(squared.std() / math.sqrt(N))
    assert abs(mse - baseline) < SIGMAS * se
    # task.loss of the constant prediction reads the last step: the same number, float32 sums
    output = torch.full((N, x.shape[1], 1), mean)
    output[:, :-1] = 7.0  # earlier steps are ignored
    assert float(task.loss(output, y)) == pytest.approx(mse, rel=1e-5)
    assert task.metric(output, y) == pytest.approx(mse, rel=1e-5)


@pytest.mark.parametrize("name", ["temporal-order", "temporal-order-3"])
def test_temporal_order_classes_are_equally_likely_so_chance_is_ln_k(name: str) -> None:
    task = make_task(name, 10)
    K = task.output_size
    assert task.baseline == math.log(K)
    _, y = task.sample(N, gen())
    p = torch.bincount(y, minlength=K).to(torch.float64) / N
    assert float((p - 1 / K).abs().max()) < SIGMAS * math.sqrt((1 / K) * (1 - 1 / K) / N)
    entropy = float(-(p * p.log()).sum())  # the best constant predictor's cross-entropy
    assert 0 <= math.log(K) - entropy < chi_square_bound(K) / (2 * N)
    uniform = torch.zeros(N, 10, K, dtype=torch.float64)
    assert float(task.loss(uniform, y)) == pytest.approx(math.log(K), rel=1e-12)
    assert task.metric(uniform, y) == pytest.approx(1 / K, abs=SIGMAS * math.sqrt(1 / K / N))


def test_the_memoryless_predictor_of_copy_has_the_closed_form_loss() -> None:
    T, n = 5, N // 10  # 10 symbols a sequence: N symbols
    task = make_task("copy", T)
    _, y = task.sample(n, gen())
    logits = torch.full((n, T + 20, 9), -math.inf, dtype=torch.float64)
    logits[:, : T + 10, 0] = 0.0  # blank, certain
    logits[:, T + 10 :, 1:] = 0.0  # uniform over the 8 symbols
    expected = 10 * math.log(8) / (T + 20)
    assert task.baseline == expected
    # exact up to float64 rounding: any symbol outside the last 10 steps would make it infinite
    assert float(task.loss(logits, y)) == pytest.approx(expected, rel=1e-12)
    symbols = y[:, T + 10 :].reshape(-1)
    p = torch.bincount(symbols - 1, minlength=8).to(torch.float64) / len(symbols)
    entropy = float(-(p * p.log()).sum())
    assert 0 <= math.log(8) - entropy < chi_square_bound(8) / (2 * len(symbols))
    # the metric reads the 10 recalled steps: a memoryless argmax is right 1/8 of the time
    guess = logits.clone()
    guess[:, T + 10 :, 1] = 1.0
    assert task.metric(guess, y) == pytest.approx(1 / 8, abs=SIGMAS * math.sqrt(7 / 64 / N))
    assert task.metric(F.one_hot(y, 9).to(torch.float64), y) == 1.0


def test_digits_chance_is_ln_10_and_the_classes_are_balanced() -> None:
    task = make_task("digits", 64)
    _, y = task.test_set(1000, gen())
    uniform = torch.zeros(len(y), 64, 10)
    assert task.baseline == math.log(10)
    assert float(task.loss(uniform, y)) == pytest.approx(math.log(10), rel=1e-6)  # float32
    (_, train_y), (_, test_y) = images_module._digits()
    counts = torch.bincount(torch.cat([train_y, test_y]), minlength=10)
    # scikit-learn's documentation: about 180 images per class, 1797 in all
    assert int(counts.sum()) == 1797 and int(counts.min()) >= 174 and int(counts.max()) <= 183


# --- layouts and distributions -------------------------------------------------------------


@pytest.mark.parametrize("T", [2, 3, 7, 20])
def test_adding_marks_one_step_in_each_half_and_sums_their_values(T: int) -> None:
    task = make_task("adding", T)
    n = N // T
    x, y = task.sample(n, gen(T))
    assert x.shape == (n, T, 2) and x.dtype == torch.float32 and y.shape == (n,)
    marks = x[:, :, 1]
    assert set(marks.unique().tolist()) <= {0.0, 1.0}
    half = math.ceil(T / 2)  # the steps p < T/2
    assert torch.equal(marks[:, :half].sum(1), torch.ones(n))
    assert torch.equal(marks[:, half:].sum(1), torch.ones(n))
    for part in (marks[:, :half], marks[:, half:]):  # uniform over the steps of each half
        assert part.shape[1] == 1 or chi_square(part.sum(0)) < chi_square_bound(part.shape[1])
    recomputed = (x[:, :, 0].double() * marks.double()).sum(1)
    assert float((y.double() - recomputed).abs().max()) <= 1.2e-7  # one float32 rounding
    values = x[:, :, 0].double().reshape(-1)
    assert float(values.min()) >= 0 and float(values.max()) < 1
    m = len(values)
    assert abs(float(values.mean()) - 0.5) < SIGMAS * math.sqrt(1 / 12 / m)
    assert abs(float(values.var()) - 1 / 12) < SIGMAS * math.sqrt(1 / 180 / m)  # Var((U-½)²)


@pytest.mark.parametrize("name", ["adding-mean", "multiplication"])
def test_pascanu_tasks_draw_one_length_per_batch_and_mark_the_early_windows(name: str) -> None:
    T, batches = 50, 200
    task = make_task(name, T)
    g, lengths = gen(), []
    for _ in range(batches):
        x, y = task.sample(50, g)
        L = x.shape[1]
        lengths.append(L)
        steps = relevant_steps(task, x)  # (B, 2), sorted
        tenth, half = math.ceil(L / 10), math.ceil(L / 2)  # integers in [0.1 L, 0.5 L)
        assert bool((steps[:, 0] < tenth).all()) and bool((steps[:, 1] >= tenth).all())
        assert bool((steps[:, 1] < half).all())
        rows = torch.arange(len(x))
        a, b = x[rows, steps[:, 0], 0].double(), x[rows, steps[:, 1], 0].double()
        target = (a + b) / 2 if name == "adding-mean" else a * b
        assert float((y.double() - target).abs().max()) <= 1.2e-7
    assert set(lengths) <= set(range(50, 55))  # the integers in [T, 1.1 T)
    assert chi_square(torch.bincount(torch.tensor(lengths) - 50, minlength=5)) < (
        chi_square_bound(5)
    )
    three = make_task(name, 3).sample(4, gen())[0]  # L = 3: markers at 0 and 1 exactly
    assert torch.equal(three[:, :, 1], torch.tensor([[1.0, 1.0, 0.0]]).expand(4, 3))


@pytest.mark.parametrize("name", ["temporal-order", "temporal-order-3"])
@pytest.mark.parametrize("T", [10, 37, 100])
def test_temporal_order_labels_decode_from_the_one_hot_symbols(name: str, T: int) -> None:
    task = make_task(name, T)
    x, y = task.sample(4000, gen(T))
    assert x.shape == (4000, T, 8) and torch.equal(x.sum(-1), torch.ones(4000, T))
    symbols = x.argmax(-1)  # (B, T): a b c d X Y E B = 0..7
    assert bool((symbols[:, 0] == 6).all()) and bool((symbols[:, -1] == 7).all())
    steps = relevant_steps(task, x)  # (B, n) in time order, exactly n per sequence
    windows = order_windows(name, T)
    for j, (start, stop) in enumerate(windows):
        a, b = ORDER_WINDOWS[name][j]  # percent: the steps p with a T <= 100 p < b T
        assert (start - 1) * 100 < a * T <= start * 100 and (stop - 1) * 100 < b * T <= stop * 100
        assert bool(((steps[:, j] >= start) & (steps[:, j] < stop)).all())
    bits = symbols.gather(1, steps) - 4  # X = 0, Y = 1
    decoded = sum(bits[:, j] << (len(windows) - 1 - j) for j in range(len(windows)))
    assert torch.equal(decoded, y)
    distractors = symbols[:, 1:-1][symbols[:, 1:-1] < 4]
    p = torch.bincount(distractors, minlength=4).double() / len(distractors)
    assert float((p - 0.25).abs().max()) < SIGMAS * math.sqrt(0.25 * 0.75 / len(distractors))


def test_temporal_order_windows_hold_a_step_and_never_meet_for_every_length() -> None:
    for name in ORDER_WINDOWS:
        for T in range(10, 1001):
            w = order_windows(name, T)
            assert w[0][0] >= 1 and w[-1][1] <= T - 1  # clear of E and B
            assert all(a < b for a, b in w)
            assert all(w[j][1] <= w[j + 1][0] for j in range(len(w) - 1))


@pytest.mark.parametrize("T", [2, 20])
def test_copy_lays_out_symbols_blanks_delimiter_and_recall(T: int) -> None:
    task = make_task("copy", T)
    x, y = task.sample(500, gen())
    assert x.shape == (500, T + 20, 10) and y.shape == (500, T + 20) and y.dtype == torch.int64
    assert torch.equal(x.sum(-1), torch.ones(500, T + 20))  # one-hot
    hot = x.argmax(-1)
    symbols = hot[:, :10]
    assert bool(((symbols >= 1) & (symbols <= 8)).all())
    assert bool((hot[:, 10 : T + 9] == 0).all())  # T - 1 blanks
    assert bool((hot[:, T + 9] == 9).all())  # the delimiter
    assert bool((hot[:, T + 10 :] == 0).all())  # 10 blanks
    assert bool((y[:, : T + 10] == 0).all()) and torch.equal(y[:, T + 10 :], symbols)
    assert (task.readout, task.input_size, task.output_size, task.dependency) == (
        "all",
        10,
        9,
        T + 10,
    )


# --- dependency and reversal ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "T"), [("adding", 10), ("adding-mean", 20), ("temporal-order", 20)]
)
def test_the_dependency_is_the_largest_lag_drawn_forward_and_reversed(name: str, T: int) -> None:
    for reverse in (False, True):
        task = make_task(name, T, reverse=reverse)
        g, lags = gen(), []
        for _ in range(50):
            x, _ = task.sample(200, g)
            lags.append(int((x.shape[1] - 1 - relevant_steps(task, x)).max()))
        assert max(lags) == task.dependency
    forward, backward = make_task(name, T), make_task(name, T, reverse=True)
    assert (forward.reversed_dependency, backward.reversed_dependency) == (
        backward.dependency,
        forward.dependency,
    )


def test_reversing_the_input_of_adding_mean_shortens_its_dependency() -> None:
    assert make_task("adding-mean", 100).dependency == 108  # L up to 109
    assert make_task("adding-mean", 100, reverse=True).dependency == 54  # ceil(109 / 2) - 1


@pytest.mark.parametrize("name", ["adding", "adding-mean", "temporal-order-3", "digits"])
def test_reversal_flips_x_in_time_and_leaves_y(name: str) -> None:
    T = 64 if name == "digits" else 30
    forward, backward = make_task(name, T), make_task(name, T, reverse=True)
    for draw in ("sample", "test_set"):
        x, y = getattr(forward, draw)(16, gen(3))
        xr, yr = getattr(backward, draw)(16, gen(3))
        assert torch.equal(xr, x.flip(1)) and torch.equal(yr, y)
    twice = reverse_inputs(backward)  # twice is the task itself
    assert (twice.reversed, twice.dependency) == (False, forward.dependency)
    assert torch.equal(twice.sample(4, gen())[0], forward.sample(4, gen())[0])


def test_reversal_of_copy_is_refused() -> None:
    with pytest.raises(GradtraceError, match="`reverse` is refused for the copy task"):
        make_task("copy", 10, reverse=True)


# --- seeds, test sets, scoring -------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in TASKS if "mnist" not in n])
def test_the_same_seed_draws_the_same_batch(name: str) -> None:
    task = make_task(name, 64 if "digits" in name else 12)
    x1, y1 = task.sample(8, gen(5))
    x2, y2 = task.sample(8, gen(5))
    x3, _ = task.sample(8, gen(6))
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert x1.dtype == torch.float32


def test_a_generated_task_draws_its_test_set_from_the_generator_given() -> None:
    task = make_task("adding", 12)
    x, y = task.test_set(100, gen(2**31 - 1))
    xs, ys = task.sample(100, gen(2**31 - 1))
    assert torch.equal(x, xs) and torch.equal(y, ys)


def test_losses_match_torch_written_out() -> None:
    g = gen()
    adding, order, copy = (
        make_task("adding", 6),
        make_task("temporal-order", 10),
        make_task("copy", 2),
    )
    _, y = adding.sample(8, g)
    out = torch.randn(8, 6, 1, generator=g, dtype=torch.float64)
    expected = float(((out[:, -1, 0] - y.double()) ** 2).mean())
    assert float(adding.loss(out, y)) == pytest.approx(expected, rel=1e-7)  # y is float32
    _, y = order.sample(8, g)
    out = torch.randn(8, 10, 4, generator=g, dtype=torch.float64)
    logp = out[:, -1] - out[:, -1].exp().sum(-1, keepdim=True).log()
    assert float(order.loss(out, y)) == pytest.approx(float(-logp[range(8), y].mean()), 1e-12)
    assert order.metric(out, y) == float((out[:, -1].argmax(-1) == y).double().mean())
    _, y = copy.sample(8, g)
    out = torch.randn(8, 22, 9, generator=g, dtype=torch.float64)
    logp = out - out.exp().sum(-1, keepdim=True).log()
    nll = -logp.gather(-1, y.unsqueeze(-1)).mean()
    assert float(copy.loss(out, y)) == pytest.approx(float(nll), rel=1e-12)


def test_an_output_of_the_wrong_shape_is_refused_naming_it() -> None:
    task = make_task("temporal-order", 10)
    _, y = task.sample(4, gen())
    for bad in (torch.zeros(4, 10), torch.zeros(4, 10, 5), torch.zeros(3, 10, 4)):
        with pytest.raises(GradtraceError, match="`output` must"):
            task.loss(bad, y)
    copy = make_task("copy", 5)
    _, y = copy.sample(4, gen())
    with pytest.raises(GradtraceError, match="one step per target step"):
        copy.loss(torch.zeros(4, 24, 9), y)


# --- digits --------------------------------------------------------------------------------


def test_digits_load_with_no_network_and_split_1437_train_360_test(monkeypatch) -> None:
    from sklearn.datasets import load_digits

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the digits must load without the network")

    images_module._digits.cache_clear()
    monkeypatch.setattr(socket, "socket", no_network)
    task = make_task("digits", 64)
    monkeypatch.undo()
    bunch = load_digits()
    data = torch.from_numpy(bunch.data).float() / 16
    order = torch.randperm(1797, generator=gen(0))
    x, y = task.test_set(5000, gen())  # the whole test split: 360
    assert x.shape == (360, 64, 1) and torch.equal(y, torch.from_numpy(bunch.target)[order[-360:]])
    assert torch.equal(x[:, :, 0], data[order[-360:]])
    train = {tuple(row) for row in (bunch.data[order[:1437].numpy()]).tolist()}
    xs, _ = task.sample(2000, gen())
    assert all(tuple(row) in train for row in (xs[:, :, 0] * 16).tolist())
    assert float(xs.min()) >= 0 and float(xs.max()) <= 1


def test_permuted_digits_use_one_fixed_permutation_of_the_pixels() -> None:
    perm = pixel_permutation(64, 0)
    assert torch.equal(perm.sort().values, torch.arange(64))
    assert torch.equal(perm, pixel_permutation(64, 0))
    assert not torch.equal(perm, pixel_permutation(64, 1))
    plain, permuted = make_task("digits", 64), make_task("permuted-digits", 64)
    x, y = plain.sample(32, gen(4))
    xp, yp = permuted.sample(32, gen(4))
    assert torch.equal(xp, x[:, perm]) and torch.equal(yp, y)
    other = make_task("permuted-digits", 64, permutation_seed=7)
    assert torch.equal(
        other.test_set(9, gen())[0], plain.test_set(9, gen())[0][:, pixel_permutation(64, 7)]
    )


def test_digits_refuse_another_length_and_a_missing_scikit_learn(monkeypatch) -> None:
    with pytest.raises(GradtraceError, match=r"`length` of the digits task is fixed at 64"):
        make_task("digits", 100)
    images_module._digits.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails
    with pytest.raises(GradtraceError, match=r"pip install 'gradtrace\[digits\]'"):
        make_task("permuted-digits", 64)
    monkeypatch.undo()
    images_module._digits.cache_clear()


# --- MNIST files ---------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic_ndim: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array, written from the format's definition."""
    ndim = array.ndim if magic_ndim is None else magic_ndim
    header = struct.pack(">BBBB", 0, 0, 0x08, ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_mnist(n_train: int = 20, n_test: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def write_idx(folder: Path, arrays: dict[str, np.ndarray], gz: bool = False) -> Path:
    folder.mkdir(exist_ok=True)
    for key, name in IDX_NAMES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def check_mnist_task(path: Path, arrays: dict[str, np.ndarray], scale: float) -> None:
    task = make_task("mnist", 784, mnist_path=path)
    x, y = task.test_set(100, gen())
    assert x.shape == (8, 784, 1) and float(x.min()) >= 0 and float(x.max()) <= 1
    # row-major pixels: each step's grey level back to the byte written, exactly
    levels = (x[:, :, 0].double() / scale).round().numpy()
    assert np.array_equal(levels, arrays["x_test"].reshape(-1, 784))
    assert torch.equal(y, torch.from_numpy(arrays["y_test"].astype(np.int64)))
    xs, ys = task.sample(50, gen())
    train = arrays["x_train"].reshape(-1, 784)
    drawn = (xs[:, :, 0].double() / scale).round().numpy()
    rows = [int(np.flatnonzero((train == row).all(1))[0]) for row in drawn]
    assert ys.tolist() == [int(arrays["y_train"][r]) for r in rows]
    perm = pixel_permutation(784, 3)
    permuted = make_task("permuted-mnist", 784, mnist_path=path, permutation_seed=3)
    assert torch.equal(permuted.test_set(4, gen())[0], x[:4, perm])


@pytest.mark.parametrize("gz", [False, True], ids=["idx", "idx.gz"])
def test_mnist_reads_idx_files_written_here(tmp_path: Path, gz: bool) -> None:
    arrays = fake_mnist()
    check_mnist_task(write_idx(tmp_path / "mnist", arrays, gz), arrays, 1 / 255)


def test_mnist_reads_an_npz_of_bytes_or_of_floats(tmp_path: Path) -> None:
    arrays = fake_mnist()
    np.savez(tmp_path / "mnist.npz", **arrays)
    check_mnist_task(tmp_path / "mnist.npz", arrays, 1 / 255)
    floats = {**arrays, "x_train": arrays["x_train"] / 255.0, "x_test": arrays["x_test"] / 255.0}
    flat = {**floats, "x_test": floats["x_test"].reshape(-1, 784).astype(np.float32)}
    np.savez(tmp_path / "floats.npz", **flat)
    task = make_task("mnist", 784, mnist_path=str(tmp_path / "floats.npz"))
    x, _ = task.test_set(8, gen())
    assert torch.equal(x[:, :, 0], torch.from_numpy(flat["x_test"]))


def corrupt(tmp_path: Path, case: str) -> Path:
    arrays = fake_mnist()
    folder = write_idx(tmp_path / case, arrays)
    labels = folder / IDX_NAMES["y_train"]
    images = folder / IDX_NAMES["x_train"]
    if case == "absent-file":
        labels.unlink()
    elif case == "wrong-magic":  # labels written with the images' magic (3 dimensions)
        labels.write_bytes(idx_bytes(arrays["y_train"].reshape(20, 1, 1)))
    elif case == "not-idx":
        images.write_bytes(b"\x1f\x8bnot an idx file")
    elif case == "short-data":
        images.write_bytes(idx_bytes(arrays["x_train"])[:-5])
    elif case == "not-bytes":
        images.write_bytes(b"\x00\x00\x0d\x03" + images.read_bytes()[4:])
    elif case == "label-count":
        labels.write_bytes(idx_bytes(arrays["y_train"][:19]))
    elif case == "label-range":
        labels.write_bytes(idx_bytes(np.full(20, 12, dtype=np.uint8)))
    elif case == "bad-gz":
        images.unlink()
        (folder / f"{IDX_NAMES['x_train']}.gz").write_bytes(b"not gzip")
    elif case == "npz-missing-key":
        folder = tmp_path / "m.npz"
        np.savez(folder, x_train=arrays["x_train"], y_train=arrays["y_train"])
    elif case == "npz-not-zip":
        folder = tmp_path / "m.npz"
        folder.write_bytes(b"plain text")
    elif case == "npz-bad-values":
        folder = tmp_path / "m.npz"
        np.savez(folder, **{**arrays, "x_test": arrays["x_test"] * 2.0})
    elif case == "not-npz":
        folder = tmp_path / "m.csv"
        folder.write_text("1,2,3")
    elif case == "nowhere":
        folder = tmp_path / "no" / "such"
    return folder


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("absent-file", "has no train-labels-idx1-ubyte"),
        ("wrong-magic", "magic number 0x00000801, got 0x00000803"),
        ("not-idx", "is not an IDX file"),
        ("short-data", "must hold 15680 bytes of data"),
        ("not-bytes", "unsigned bytes"),
        ("label-count", "one label per image"),
        ("label-range", "labels 0-9"),
        ("bad-gz", "cannot be read"),
        ("npz-missing-key", "it lacks x_test, y_test"),
        ("npz-not-zip", "is not a readable .npz"),
        ("npz-bad-values", "integers 0-255 or floats in"),
        ("not-npz", "a folder of IDX files or a .npz file"),
        ("nowhere", "which does not exist"),
    ],
)
def test_a_bad_mnist_path_is_refused_in_one_sentence(tmp_path: Path, case: str, says: str) -> None:
    with pytest.raises(GradtraceError, match="`mnist_path`") as error:
        make_task("mnist", 784, mnist_path=corrupt(tmp_path, case))
    assert says in str(error.value) and "\n" not in str(error.value)


def test_mnist_needs_a_path_and_its_own_length() -> None:
    with pytest.raises(GradtraceError, match=r"give `mnist_path` \(--mnist-path\)"):
        make_task("permuted-mnist", 784)
    with pytest.raises(GradtraceError, match="fixed at 784"):
        make_task("mnist", 100, mnist_path="/no/such/path")  # the length is checked first


# --- bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"name": "addition", "length": 10}, "`name` must be one of the tasks adding, adding-mean"),
        ({"name": "adding", "length": 1}, "`length` must be a whole number >= 2, got 1"),
        ({"name": "adding", "length": 2.5}, "`length` must be a whole number >= 2, got 2.5"),
        ({"name": "adding", "length": True}, "`length` must be a whole number >= 2, got True"),
        ({"name": "adding-mean", "length": 2}, "at least 3 for the adding-mean task"),
        ({"name": "temporal-order", "length": 9}, "at least 10 for the temporal-order task"),
        ({"name": "adding", "length": 10, "reverse": "yes"}, "`reverse` must be True or False"),
        ({"name": "digits", "length": 64, "permutation_seed": -1}, "`permutation_seed` must"),
        ({"name": "mnist", "length": 784, "mnist_path": 3}, "`mnist_path` must be a path"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_bad_argument_is_refused_in_one_sentence(kwargs: dict, says: str) -> None:
    with pytest.raises(GradtraceError) as error:
        make_task(**kwargs)
    assert says in str(error.value) and "\n" not in str(error.value)


def test_a_bad_batch_request_is_refused_before_it_allocates() -> None:
    task = make_task("copy", 100)
    with pytest.raises(GradtraceError, match="`batch_size` must be a whole number >= 1"):
        task.sample(0, gen())
    with pytest.raises(GradtraceError, match=r"`generator` must be a torch\.Generator"):
        task.sample(4, 0)
    with gradtrace.budget(max_memory="1MB"), pytest.raises(GradtraceError, match="`size`"):
        task.test_set(10_000, gen())
