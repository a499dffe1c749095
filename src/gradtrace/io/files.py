"""Output paths checked before any work, and files written atomically.

A path is checked when the request is made, not after minutes of computing: a directory where a
file is wanted, a missing parent folder or a place that cannot be written is refused in one
sentence. Files are written to a temporary file in the same folder and renamed over the target,
so a reader never sees half a file and a failure leaves what was there untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from gradtrace.errors import check


def as_path(path: object, name: str = "path") -> Path:
    """`path` as a Path, refusing what is not a file path (None, a number, an open file)."""
    check(
        isinstance(path, str | os.PathLike) and str(path) != "",
        f"`{name}` must be a file path (a str or pathlib.Path), got "
        + (repr(path) if isinstance(path, str) else type(path).__name__),
    )
    assert isinstance(path, str | os.PathLike)  # for the type checker
    return Path(path)


def check_output_file(
    path: str | Path, name: str = "path", suffixes: Iterable[str] | None = None
) -> Path:
    """Refuse a file path that cannot be written; return it as a Path.

    Args:
        path: The file to write.
        name: The argument's name, for the message.
        suffixes: The suffixes allowed (".png", ...), or None for any.

    Raises:
        GradtraceError: if the suffix is not allowed, the path is a directory, its parent
            folder is missing or not a folder, or the folder is not writable.
    """
    path = as_path(path, name)
    if suffixes is not None:
        allowed = tuple(suffixes)
        check(
            path.suffix.lower() in allowed,
            f"`{name}` must end in {', '.join(allowed)}, got {str(path)!r}",
        )
    check(not path.is_dir(), f"`{name}` must be a file, got the directory {str(path)!r}")
    parent = path.parent
    check(
        parent.is_dir(),
        f"`{name}` must be in an existing folder, got {str(path)!r} whose folder "
        f"{str(parent)!r} does not exist",
    )
    check(
        _writable(parent) and (not path.exists() or os.access(path, os.W_OK)),
        f"`{name}` must be a writable place, got {str(path)!r}",
    )
    return path


def _writable(folder: Path) -> bool:
    """Whether a file can be created in `folder`: tried, since permissions alone can lie (root,
    read-only mounts, /proc)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_folder(path: str | Path, name: str = "out") -> Path:
    """Refuse a folder that cannot be created or written; return it as a Path.

    A missing folder is fine (it is created when written) if its nearest existing ancestor is
    a writable folder.

    Raises:
        GradtraceError: if the path is a file, or no writable folder can hold it.
    """
    path = Path(path)
    check(not path.is_file(), f"`{name}` must be a folder, got the file {str(path)!r}")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    check(
        existing.is_dir() and _writable(existing),
        f"`{name}` must be a folder that can be written, got {str(path)!r} "
        f"({str(existing)!r} is not writable)",
    )
    return path


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`.

    The temporary file keeps the suffix of `path` (so that writers which choose a format by
    suffix, such as matplotlib, do the right thing) and is removed if `write` fails.

    Returns:
        `path` as a Path.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a result is not
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (see `write_atomic`)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))
