"""Where the monitor's records go: any number of writers at once.

    JsonlWriter        the run's log in the project's one record format (`gradtrace.records`),
                       one line per record, flushed as written; `gradtrace.load` reads it back
                       into the same records, also while it grows or after a crash (a torn last
                       line is left out)
    TensorBoardWriter  TensorBoard event files (the `tensorboard` extra): scalars for the loss,
                       the norms, clipping and each layer's recurrent share and dL/dh_0; each
                       through-time profile as an image and a histogram. Non-finite numbers
                       never reach TensorBoard (its histograms break on them): they are left
                       out and the step gets a text note instead.

A writer is any object with `write(record)` and `close()`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from gradtrace.errors import check
from gradtrace.io.files import check_output_folder
from gradtrace.records.base import Record
from gradtrace.records.files import append
from gradtrace.records.monitor import MonitorStep

LOG_NAME = "monitor.jsonl"
TENSORBOARD = "TensorBoard files need the tensorboard package: pip install 'gradtrace[tensorboard]'"


class Writer(Protocol):
    def write(self, record: Record) -> None: ...

    def close(self) -> None: ...


class JsonlWriter:
    """Appends each record as one line of a .jsonl file (created with its folder)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        check(
            path.suffix == ".jsonl",
            f"`log` must be a folder or a .jsonl file, got {str(path)!r}",
        )
        check_output_folder(path.parent, "log").mkdir(parents=True, exist_ok=True)
        self.path = path

    def write(self, record: Record) -> None:
        append(record, self.path)

    def close(self) -> None:
        return None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


class TensorBoardWriter:
    """Writes scalars, images and histograms of each `MonitorStep` with SummaryWriter."""

    def __init__(self, folder: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the extra is missing
            raise ModuleNotFoundError(TENSORBOARD) from None
        self.folder = check_output_folder(Path(folder), "log")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def write(self, record: Record) -> None:
        if not isinstance(record, MonitorStep):
            return
        step, w = record.step, self.writer
        skipped = []

        def scalar(tag: str, value: float | None) -> None:
            if _finite(value):
                w.add_scalar(tag, value, step)
            elif value is not None:
                skipped.append(tag)

        scalar("loss", record.loss)
        scalar("grad_norm/global", record.grad_norm)
        for p in record.parameters:
            scalar(f"grad_norm/{p.name}", p.grad_norm)
            scalar(f"update_ratio/{p.name}", p.update_ratio)
        if record.clip is not None:
            scalar("clip/norm_before", record.clip.norm_before)
            scalar("clip/fraction", record.clip.clipped_fraction)
            w.add_scalar("clip/acted", float(record.clip.acted), step)
        for prof in record.profiles:
            tag = prof.label.replace(" ", "_")
            if math.isfinite(prof.mean_recurrent_share):  # the report's figure
                scalar(f"recurrent_share/{tag}", prof.mean_recurrent_share)
            scalar(f"initial_grad/{tag}", prof.initial)
            logs = prof.total.clamp_min(1e-300).log10()
            good = logs[logs.isfinite()]
            if good.numel():
                w.add_histogram(f"profile/{tag}", good, step)
                w.add_image(f"profile/{tag}", _strip(logs), step, dataformats="HW")
        if skipped or record.nonfinite is not None:
            note = "non-finite values left out: " + ", ".join(skipped) if skipped else ""
            if record.nonfinite is not None:
                note = (note + "; " if note else "") + record.nonfinite.note
            w.add_text("nonfinite", note, step)
        w.flush()

    def close(self) -> None:
        self.writer.close()


def _strip(logs: Any) -> Any:
    """A (8, n) image of log10 ||dL/dh_b|| over the boundaries, scaled to [0, 1]."""
    import torch

    finite = logs[logs.isfinite()]
    low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
    scaled = ((logs - low) / max(high - low, 1e-12)).nan_to_num(0.0).clamp(0, 1)
    return scaled.float().unsqueeze(0).expand(8, -1).contiguous().to(torch.float32)


def open_writers(
    log: str | Path | None, tensorboard: bool, writers: Sequence[Writer]
) -> list[Writer]:
    """The writers a Monitor's options ask for: the log (a folder or a .jsonl path),
    TensorBoard in the log folder, and the user's own.

    Raises:
        GradtraceError: if the log place cannot be written, or TensorBoard without a folder.
        ModuleNotFoundError: for TensorBoard without its extra, naming the pip install.
    """
    out: list[Writer] = []
    folder = None
    if log is not None:
        path = Path(log)
        if path.suffix == ".jsonl":
            out.append(JsonlWriter(path))
            folder = path.parent
        else:
            check(
                path.suffix not in (".json", ".txt", ".log") or path.is_dir(),
                f"`log` must be a folder or a .jsonl file, got {str(path)!r}, which names a "
                f"{path.suffix} file; the log is one record per line: give a .jsonl name",
            )
            folder = check_output_folder(path, "log")
            out.append(JsonlWriter(folder / LOG_NAME))
    if tensorboard:
        check(folder is not None, "`tensorboard` needs a `log` folder to write its files in")
        assert folder is not None
        out.append(TensorBoardWriter(folder))
    for writer in writers:
        check(
            callable(getattr(writer, "write", None)) and callable(getattr(writer, "close", None)),
            f"`writers` must hold objects with write(record) and close(), got "
            f"{type(writer).__name__}",
        )
        out.append(writer)
    return out
