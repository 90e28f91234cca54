"""A tiny document model rendered to Markdown and to self-contained HTML.

The report is a list of blocks (heading, paragraph, table, figure); both outputs come from
the same list so they never disagree. HTML embeds figures as inline SVG.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Heading:
    """A section heading."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table with a caption; numbers are formatted by ``digits``."""

    frame: pd.DataFrame
    caption: str = ""
    digits: int = 3


@dataclass(frozen=True)
class Figure:
    """A figure saved as PNG + SVG next to the report."""

    png: Path
    svg: Path
    caption: str


Block = Heading | Paragraph | Table | Figure


@dataclass
class Document:
    """An ordered list of blocks with a title."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> None:
        """Append one block."""
        self.blocks.append(block)


def _cell(value: object, digits: int) -> str:
    """Format one table cell."""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}"
    return str(value)


def to_markdown(doc: Document, base: Path) -> str:
    """Render as GitHub-flavoured Markdown; figure paths relative to ``base``."""
    lines = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"*{block.caption}*", ""]
            cols = [str(col) for col in block.frame.columns]
            lines.append("| " + " | ".join(cols) + " |")
            lines.append("|" + "|".join("---" for _ in cols) + "|")
            for row in block.frame.itertuples(index=False):
                lines.append("| " + " | ".join(_cell(v, block.digits) for v in row) + " |")
            lines.append("")
        else:
            rel = block.png.relative_to(base)
            lines += [f"![{block.caption}]({rel.as_posix()})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


def to_html(doc: Document) -> str:
    """Render as one self-contained HTML page (figures inline as SVG)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(doc.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;line-height:1.45}"
        "table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem}"
        "td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}"
        "figure{margin:1rem 0}figcaption,caption{font-size:.85rem;color:#444;text-align:left}"
        "</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append("<table>")
            if block.caption:
                parts.append(f"<caption>{html.escape(block.caption)}</caption>")
            head = "".join(f"<th>{html.escape(str(col))}</th>" for col in block.frame.columns)
            parts.append(f"<tr>{head}</tr>")
            for row in block.frame.itertuples(index=False):
                cells = "".join(f"<td>{html.escape(_cell(v, block.digits))}</td>" for v in row)
                parts.append(f"<tr>{cells}</tr>")
            parts.append("</table>")
        else:
            svg = block.svg.read_text(encoding="utf-8")
            svg = svg[svg.find("<svg") :]
            parts.append(
                f"<figure>{svg}<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
