"""The tour's page: sections as data, and one self-contained HTML file made from them.

A `Section` holds what one stop of the tour says (the lecture's claim in our words, what
gradtrace measured, the verdict), its figures as PNG data URIs, the numbers it shows (written
into the page as one JSON block, `<script type="application/json" id="tour-data">`, so that the
numbers can be checked by a program) and the records it computed (written beside the page).

The page loads nothing: its style is inline, its figures are data URIs, it has no script to
run, and a Content-Security-Policy forbids any fetch but data: images.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gradtrace.records.base import Record
from gradtrace.records.codec import encode_float

AGREE, DISAGREE = "agree", "disagree"


@dataclass(frozen=True)
class Figure:
    """One embedded figure: a data: URI of a PNG, its caption and its alt text."""

    uri: str
    caption: str
    alt: str


@dataclass(frozen=True)
class Section:
    """One stop of the tour.

    Attributes:
        id: The anchor, stable across versions ("checkpoint-vanishing").
        title: The heading.
        lecture: Which lecture and part it follows, e.g. "lecture 000, section 1.4".
        claim: HTML: what the lecture claims, in the tour's own words.
        measured: HTML: what gradtrace measured (paragraphs, tables).
        agree: Whether the measurement agrees with the claim.
        verdict: One sentence that says why.
        figures: The figures, in order.
        numbers: The numbers shown, JSON-ready (tensors and non-finite floats are converted).
        records: Records computed on the way, by a short name, written beside the page.
    """

    id: str
    title: str
    lecture: str
    claim: str
    measured: str
    agree: bool
    verdict: str
    figures: tuple[Figure, ...] = ()
    numbers: dict[str, Any] = field(default_factory=dict)
    records: dict[str, Record] = field(default_factory=dict)

    @property
    def mark(self) -> str:
        """ "agree" or "disagree"."""
        return AGREE if self.agree else DISAGREE


def esc(text: object) -> str:
    """Text as HTML, quotes included."""
    return html.escape(str(text), quote=True)


def num(x: float, digits: int = 4) -> str:
    """A number for prose: `digits` significant figures; "0" and "inf" spelled plainly."""
    x = float(x)
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{x:.{digits}g}"


def power(log10_value: float, digits: int = 3, *, markup: bool = True) -> str:
    """10^v for reading: plainly between 1e-3 and 1e5, else 1.3 &times; 10<sup>-14</sup> (HTML)
    or 1.3e-14 (`markup` False, for text that is escaped later)."""
    if not math.isfinite(log10_value):
        return "0" if log10_value < 0 else "inf"
    exponent = math.floor(log10_value)
    mantissa = 10 ** (log10_value - exponent)
    if round(mantissa, digits - 1) >= 10:
        mantissa, exponent = 1.0, exponent + 1
    if -3 <= exponent <= 4:
        return num(10**log10_value, digits)
    if not markup:
        return f"{mantissa:.{digits - 1}f}e{exponent}"
    return f"{mantissa:.{digits - 1}f}&times;10<sup>{exponent}</sup>"


def para(*parts: str) -> str:
    """One paragraph of already-escaped HTML parts."""
    return "<p>" + " ".join(parts) + "</p>"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], css: str = "") -> str:
    """An HTML table; header cells are escaped, body cells are HTML as given."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    klass = f' class="{esc(css)}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def jsonable(value: Any) -> Any:
    """Numbers, tensors, tuples and dicts as strict-JSON values (the records' convention for
    non-finite floats: "Infinity", "-Infinity", "NaN")."""
    if isinstance(value, Tensor):
        return jsonable(value.detach().cpu().tolist())
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    raise TypeError(f"cannot write {type(value).__name__} into the tour's numbers")


_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
  max-width: 60rem; margin: 0 auto; padding: 1rem 1.5rem 4rem; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; } h2 { margin-top: 2.6rem; font-size: 1.3rem; }
h3 { font-size: 1rem; margin: 1rem 0 0.3rem; color: #445; }
nav ol { columns: 2; } nav li { margin: 0.1rem 0; }
.lecture { color: #667; font-size: 0.9rem; margin-top: -0.6rem; }
section { border-top: 1px solid #dde; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.88rem; }
th, td { border: 1px solid #ccd; padding: 0.2rem 0.5rem; text-align: right; vertical-align: top; }
th { background: #f1f3f8; } table.text td, table.text th { text-align: left; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eef; }
figcaption { font-size: 0.85rem; color: #556; }
.verdict { font-weight: 600; padding: 0.45rem 0.7rem; border-radius: 4px; }
.verdict.agree { background: #e3f4e6; border-left: 5px solid #2e8540; }
.verdict.disagree { background: #fbe6e4; border-left: 5px solid #c0392b; }
.mark { font-size: 0.75rem; font-weight: 700; padding: 0 0.35rem; border-radius: 3px; }
.mark.agree { background: #2e8540; color: white; }
.mark.disagree { background: #c0392b; color: white; }
code { background: #f3f3f6; padding: 0 0.2rem; border-radius: 3px; }
"""

_SYMBOL = {AGREE: "&#10004; Agrees", DISAGREE: "&#10008; Disagrees"}


def _section_html(number: int, s: Section) -> str:
    figures = "".join(
        f'<figure><img src="{f.uri}" alt="{esc(f.alt)}"><figcaption>{f.caption}</figcaption>'
        "</figure>"
        for f in s.figures
    )
    return (
        f'<section id="{esc(s.id)}" data-verdict="{s.mark}">'
        f"<h2>{number}. {esc(s.title)}</h2>"
        f'<p class="lecture">{esc(s.lecture)}</p>'
        f'<h3>The lecture claims</h3><div class="claim">{s.claim}</div>'
        f'<h3>gradtrace measures</h3><div class="measured">{s.measured}</div>{figures}'
        f'<p class="verdict {s.mark}">{_SYMBOL[s.mark]}: {esc(s.verdict)}</p></section>'
    )


def render_page(sections: Sequence[Section], *, intro: str, footer: str) -> str:
    """The whole tour as one HTML document: a table of contents, then each section.

    Args:
        sections: The sections, in the order of the tour.
        intro: HTML under the title.
        footer: HTML at the end (how it was made).
    """
    toc = "".join(
        f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a> <span class="mark {s.mark}">'
        f"{s.mark}</span></li>"
        for s in sections
    )
    for s in sections:  # the block's own keys are not for a section's numbers to overwrite
        clash = {"title", "verdict"} & set(s.numbers)
        if clash:
            raise ValueError(f"section {s.id!r} has numbers named {sorted(clash)}")
    data = {
        "sections": {
            s.id: {"title": s.title, "verdict": s.mark, **jsonable(s.numbers)} for s in sections
        }
    }
    # "</" would end the script element early; JSON allows the escaped solidus.
    blob = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    body = "".join(_section_html(i + 1, s) for i, s in enumerate(sections))
    agree = sum(s.agree for s in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>gradtrace tour: vanishing and exploding gradients</title><style>{_STYLE}"
        "</style></head><body><header><h1>Vanishing and exploding gradients: the five lectures, "
        f"measured</h1>{intro}<p>{agree} of {len(sections)} claims agree with the measurement."
        '</p></header><nav id="contents"><h2>Contents</h2><ol>'
        f"{toc}</ol></nav>{body}<footer>{footer}</footer>"
        f'<script type="application/json" id="tour-data">{blob}</script></body></html>\n'
    )


def log10_list(values: Tensor) -> list[float]:
    """A (T,) tensor of log10 values as a list of floats (float64)."""
    return [float(v) for v in values.detach().cpu().to(torch.float64)]
