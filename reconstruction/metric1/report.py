"""A Metric 1 run's report: the long CSV, the Markdown summary with Table II, Figs. 4–6.

Rows are `scoring.summarize`'s (plus ``engine``, ``variant`` and ``sweep`` keys); rates are
written in %. `write_report` writes all three for one run; `json_safe` makes its results
storable in a `TopKRun`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["json_safe", "write_csv", "write_markdown", "write_plots", "write_report"]

Row = dict[str, object]
# The columns that name a condition: one line, bar or table row per distinct combination.
CONDITION_KEYS = ("engine", "variant", "group")


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    """Write long rows (the union of their keys as columns) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _percent(value: object) -> str:
    return (
        "—"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{100 * float(value):.1f}")
    )


def _label(row: Row) -> str:
    """The condition a row belongs to, e.g. ``mobileface / excluded / eigenfaces``."""
    return " / ".join(str(row[key]) for key in CONDITION_KEYS if key in row)


def _sweep_table(
    selected: list[Row], axis: str, *, low_key: str, high_key: str, spread: str
) -> list[str]:
    """Markdown table of tpr (with its interval), fpr and no match against ``axis``."""
    out = [
        f"| condition | {axis} | tpr % ({spread}) | fpr % | no match % | queries |",
        "|---|---|---|---|---|---|",
    ]
    for row in selected:
        out.append(
            f"| {_label(row)} | {row[axis]} | {_percent(row['tpr'])} "
            f"({_percent(row[low_key])}–{_percent(row[high_key])}) | "
            f"{_percent(row['fpr'])} | {_percent(row['no_match'])} | {row['queries']} |"
        )
    return out


def _table_ii(rows: list[Row], *, n_ref: int, k_ref: int) -> list[str]:
    """Table II's section: the non-unique and most-frequent-class false-positive shares."""
    lines = [
        f"## Table II: non-unique false positives (same class) (N = {n_ref}, K = {k_ref})",
        "",
        "Non-unique % (the paper's Table II): the share of false-positive queries whose "
        "class (top-1 wrong identity) is the class of another false positive of the same "
        "condition, per gallery draw, averaged. Most frequent %: the share on the single "
        "most frequent class.",
        "",
        "| condition | non-unique % | most frequent class % | fpr % |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {_label(row)} | {_percent(row['fp_non_unique_share'])} | "
            f"{_percent(row['fp_recurring_share'])} | {_percent(row['fpr'])} |"
        )
    lines.append("")
    return lines


def write_markdown(
    rows: Sequence[Row],
    path: Path,
    *,
    title: str,
    notes: Sequence[str] = (),
    reference: tuple[int, int] = (1000, 25),
    interval: Literal["trials", "wilson"] = "trials",
) -> Path:
    """A Markdown summary: the K sweep, the N sweep and Table II (rates in %).

    ``interval``: the tpr interval shown, over gallery draws, or Wilson over queries (for a
    single draw, as a commercial engine's).
    """
    n_ref, k_ref = reference
    low_key, high_key, spread = (
        ("tpr_wilson_low", "tpr_wilson_high", "95% Wilson")
        if interval == "wilson"
        else ("tpr_p2.5", "tpr_p97.5", "95% over trials")
    )
    keys = {"low_key": low_key, "high_key": high_key, "spread": spread}
    lines = [f"# {title}", "", *[f"- {note}" for note in notes], ""]
    sweep_k = [r for r in rows if r["n"] == n_ref and r.get("sweep") in ("k", None)]
    sweep_n = [r for r in rows if r["k"] == k_ref and r.get("sweep") in ("n", None)]
    if sweep_k:
        lines += [f"## tpr / fpr against K (N = {n_ref})", "", *_sweep_table(sweep_k, "k", **keys)]
        lines.append("")
    if sweep_n:
        lines += [f"## tpr / fpr against N (K = {k_ref})", "", *_sweep_table(sweep_n, "n", **keys)]
        lines.append("")
    reference_rows = [
        r for r in rows if r["n"] == n_ref and r["k"] == k_ref and r.get("sweep") in ("k", None)
    ] or [r for r in rows if r["n"] == n_ref and r["k"] == k_ref]
    if reference_rows:
        lines += _table_ii(reference_rows, n_ref=n_ref, k_ref=k_ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def _figure_save(figure: Any, folder: Path, name: str) -> list[Path]:
    """Save ``figure`` as ``folder/name.png`` and ``.svg``."""
    written = []
    for suffix in ("png", "svg"):
        path = folder / f"{name}.{suffix}"
        figure.savefig(path, dpi=120)
        written.append(path)
    return written


def _curve_panel(panel: Any, selected: list[Row], *, axis: str, field: str, colours: dict) -> None:
    """One panel of a sweep figure: a line with its interval band per condition."""
    import matplotlib

    # One colour per engine and query group; the source variant is the line style, so
    # many series stay tellable apart and the legend sits outside the data.
    palette = matplotlib.colormaps["tab10"]
    series: dict[str, list[Row]] = {}
    for row in selected:
        series.setdefault(_label(row), []).append(row)
    for key, points in series.items():
        points.sort(key=lambda r: r[axis])
        first = points[0]
        slot = (first.get("engine"), first.get("group"))
        colour = colours.setdefault(slot, palette(len(colours) % 10))
        style = "--" if first.get("variant") == "included" else "-"
        x = [p[axis] for p in points]
        y = [100 * p[field] for p in points]
        low = [100 * p[f"{field}_p2.5"] for p in points]
        high = [100 * p[f"{field}_p97.5"] for p in points]
        panel.plot(x, y, marker="o", label=key, color=colour, linestyle=style)
        panel.fill_between(x, low, high, alpha=0.12, color=colour)


def _curves_plot(
    rows: Sequence[Row], folder: Path, *, axis: str, fixed: str, value: int, name: str
) -> list[Path]:
    """tpr and fpr against ``axis`` at ``fixed`` = ``value`` (Fig. 4 or 5); none below 2 points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    selected = [r for r in rows if r[fixed] == value and r.get("sweep") in (axis, None)]
    if len({r[axis] for r in selected}) < 2:
        return []
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 2, sharey=True)
    colours: dict[tuple[object, object], object] = {}
    for panel, field in zip(panels, ("tpr", "fpr"), strict=True):
        _curve_panel(panel, selected, axis=axis, field=field, colours=colours)
        panel.set_xlabel(axis.upper())
        panel.set_title(f"{field} ({fixed.upper()} = {value})")
        panel.set_ylim(-2, 102)
        if axis == "n":
            panel.set_xscale("log")
    panels[0].set_ylabel("%")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize="small")
    return _figure_save(figure, folder, name)


def _bars_plot(
    rows: Sequence[Row], folder: Path, *, n_ref: int, k_ref: int, name: str
) -> list[Path]:
    """tpr, fpr and no match per condition at the reference N and K (Fig. 6)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    unique_bars: dict[str, Row] = {}
    for row in rows:
        if row["n"] == n_ref and row["k"] == k_ref:
            unique_bars.setdefault(_label(row), row)
    if not unique_bars:
        return []
    figure = Figure(figsize=(max(6, 0.9 * len(unique_bars) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    x = np.arange(len(unique_bars))
    width = 0.27
    for offset, field in zip((-width, 0, width), ("tpr", "fpr", "no_match"), strict=True):
        axes.bar(x + offset, [100 * r[field] for r in unique_bars.values()], width, label=field)
    axes.set_xticks(x, list(unique_bars), rotation=30, ha="right")
    axes.set_ylabel("%")
    axes.set_title(f"tpr / fpr / no match (N = {n_ref}, K = {k_ref})")
    axes.legend()
    return _figure_save(figure, folder, name)


def write_plots(
    rows: Sequence[Row],
    folder: Path,
    *,
    reference: tuple[int, int] = (1000, 25),
    stem: str = "metric1",
) -> list[Path]:
    """Figs. 4–6 as PNG and SVG: tpr/fpr against K, against N, and bars per engine."""
    n_ref, k_ref = reference
    folder.mkdir(parents=True, exist_ok=True)
    return [
        *_curves_plot(rows, folder, axis="k", fixed="n", value=n_ref, name=f"{stem}_vs_k"),
        *_curves_plot(rows, folder, axis="n", fixed="k", value=k_ref, name=f"{stem}_vs_n"),
        *_bars_plot(rows, folder, n_ref=n_ref, k_ref=k_ref, name=f"{stem}_bars"),
    ]


def write_report(
    rows: Sequence[Row],
    out_dir: Path,
    *,
    stem: str,
    title: str,
    notes: Sequence[str],
    reference: tuple[int, int],
    interval: Literal["trials", "wilson"] = "trials",
) -> list[Path]:
    """A run's ``stem``.csv, ``stem``.md and figures in ``out_dir``; the paths written."""
    csv_path = write_csv(rows, out_dir / f"{stem}.csv")
    markdown = write_markdown(
        rows,
        out_dir / f"{stem}.md",
        title=title,
        notes=notes,
        reference=reference,
        interval=interval,
    )
    figures = write_plots(rows, out_dir, reference=reference, stem=stem)
    return [csv_path, markdown, *figures]


def json_safe(value: Any) -> Any:
    """NaN → None (PostgreSQL's jsonb has no NaN); numpy scalars → Python."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
