"""What every record shares: to_dict / from_dict through the one codec, equality, a short repr.

A record is a frozen dataclass that derives from `Record`. One that stands on its own (a curve,
a trace, a map report) names its `KIND`; its dict then starts with a format tag such as
"gradtrace.gradient_flow/1", and `gradtrace.records.from_dict` (or `gradtrace.load`) finds the
class from that tag. Parts of a record (a theory block, a cycle of a map) have no kind: their
type is known from the field that holds them.

Equality compares every field, tensors bit for bit with NaN equal to NaN, so
`R.from_dict(r.to_dict()) == r` is the round-trip test.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, ClassVar, Self

from torch import Tensor

from gradtrace.errors import GradtraceError, check
from gradtrace.records.codec import decode_fields, encode, same

PREFIX = "gradtrace."
KINDS: dict[str, type[Record]] = {}
# The figures' layer, found by name when a record is drawn (as pandas finds its plotting
# backend): records import nothing above them, and matplotlib loads only for a figure.
FIGURES = "gradtrace.plots"


class Record:
    """Base of every record; see the module docstring."""

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("KIND"):
            check(cls.KIND not in KINDS, f"record kind {cls.KIND!r} is defined twice")
            KINDS[cls.KIND] = cls

    @classmethod
    def format_tag(cls) -> str:
        """ "gradtrace.<kind>/<version>"."""
        return f"{PREFIX}{cls.KIND}/{cls.VERSION}"

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-ready dict of every field, with the format tag for a record of a kind."""
        fields = encode(self)
        return {"format": self.format_tag(), **fields} if self.KIND else fields

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """The inverse of `to_dict`.

        Raises:
            GradtraceError: if `data` is not this kind of record or does not fit its fields.
        """
        if cls.KIND:
            check(
                isinstance(data, dict) and "format" in data,
                f"`data` must be a dict with a 'format' tag {cls.format_tag()!r}, got "
                f"{type(data).__name__ if not isinstance(data, dict) else 'no format tag'}",
            )
            kind, version = parse_format(data["format"])
            check(
                kind == cls.KIND,
                f"`data` must be a {cls.format_tag()} record, got format {data['format']!r}",
            )
            check(
                version <= cls.VERSION,
                f"`data` is a {data['format']} record, written by a newer gradtrace than this "
                f"one (which reads up to version {cls.VERSION}); upgrade gradtrace",
            )
        result: Self = decode_fields(cls, data)
        return result

    def plot(self, path: str | Path, **options: Any) -> Path:
        """Draw this record to `path` (.png, .pdf or .svg) with the one figure function of its
        kind: `gradtrace.plot(record, path, **options)`. Returns the path written.

        Raises:
            GradtraceError: if this kind of record has no figure or the path cannot be written.
        """
        draw = importlib.import_module(FIGURES).plot
        written: Path = draw(self, path, **options)
        return written

    def __eq__(self, other: object) -> bool:
        return same(self, other)

    __hash__ = None  # type: ignore[assignment]  # records hold tensors: not hashable

    def __repr__(self) -> str:  # one line in a notebook, not pages of tensors
        assert dataclasses.is_dataclass(self)
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                parts.append(f"{f.name}=<{tuple(value.shape)}>")
            elif isinstance(value, tuple | list) and len(value) > 3:
                parts.append(f"{f.name}=<{len(value)} items>")
            elif isinstance(value, Record) or (isinstance(value, dict) and len(value) > 3):
                parts.append(f"{f.name}=...")
            elif isinstance(value, str) and len(value) > 40:
                parts.append(f"{f.name}={value[:37]!r}...")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def parse_format(tag: Any) -> tuple[str, int]:
    """ "gradtrace.gradient_flow/1" -> ("gradient_flow", 1).

    Raises:
        GradtraceError: if `tag` is not a gradtrace format tag.
    """
    ok = isinstance(tag, str) and tag.startswith(PREFIX) and "/" in tag
    kind, _, version = tag.removeprefix(PREFIX).partition("/") if ok else ("", "", "")
    check(
        ok and version.isdigit(),
        f"`format` must be a tag such as 'gradtrace.gradient_flow/1', got {tag!r}",
    )
    return kind, int(version)


def from_dict(data: Any) -> Record:
    """Any record of a kind from its dict, the class chosen by the format tag.

    Raises:
        GradtraceError: if `data` has no format tag or names an unknown kind.
    """
    check(
        isinstance(data, dict) and "format" in data,
        f"`data` must be a gradtrace record (a dict with a 'format' tag), got "
        f"{type(data).__name__ if not isinstance(data, dict) else 'a dict without one'}",
    )
    kind, _ = parse_format(data["format"])
    if kind not in KINDS:
        raise GradtraceError(
            f"`format` names an unknown record kind {kind!r}; known: {', '.join(sorted(KINDS))}"
        )
    return KINDS[kind].from_dict(data)
