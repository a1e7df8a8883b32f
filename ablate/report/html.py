"""The report page: one self-contained HTML file that works offline.

plotly.js is inlined once in ``<head>``; each figure is a ``<div>`` with a stable id
(``fig-<slug of its name>``) and a small script that draws it.  No script, style or font
is fetched from anywhere, so the page opens from a laptop, a CI artifact or an MLflow
artifact view without network access.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from ablate.atomic import atomic_path

# The table fits a 1400 px window (tests/report/test_html.py measures it in Chromium): cells wrap at
# spaces (an interval after its mean, a verdict's seed count), numbers never break.
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1400px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
p.description { color: #555; }
.table-wrap { overflow-x: auto; }
table.results { border-collapse: collapse; font-size: .8rem; font-variant-numeric: tabular-nums; }
table.results th, table.results td { border: 1px solid #ddd; padding: .2rem .35rem; text-align: right; }
table.results th { background: #f4f4f4; position: sticky; top: 0; }
table.results td:first-child, table.results th:first-child { text-align: left; }
table.results tbody tr:nth-child(even) { background: #fafafa; }
ul.notes { color: #444; font-size: .9rem; }
.figure { margin: 1rem 0 2rem; }
"""


def figure_id(name: str, taken: set[str]) -> str:
    """A stable, unique HTML id for a figure named ``name``: ``fig-`` and its slug."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "figure"
    fid, n = f"fig-{slug}", 2
    while fid in taken:
        fid, n = f"fig-{slug}-{n}", n + 1
    taken.add(fid)
    return fid


BREAK_AFTER = re.compile(r"([=(,_/])(?=\S)")  # in names and levels; a number has none of these


def breakable(text: str) -> str:
    """``text`` escaped, with a line-break opportunity after ``= ( , _ /`` so long names wrap.

    Example:
        >>> breakable("loss.box=giou(weight=2)")
        'loss.box=<wbr>giou(<wbr>weight=<wbr>2)'
    """
    return BREAK_AFTER.sub(r"\1<wbr>", html.escape(text, quote=False))


def table_to_html(
    display: pd.DataFrame,
    *,
    best: set[tuple[int, str]] | pd.DataFrame | None = None,
    links: list[str | None] | None = None,
) -> str:
    """A plain HTML table of already formatted cells.

    Args:
        display: the table as display strings, one row per variant.
        best: ``(row position, column name)`` pairs to show in bold (best value of a column);
            the position is 0-based in ``display``'s row order, not its index label.  A
            boolean frame shaped like ``display`` (``table.best_cells``) is accepted too.
        links: per row, a URL (the variant's MLflow run) that the row's first cell links
            to, or None for no link.

    Example:
        ``table_to_html(display, best={(0, "mAP")}, links=[run_url, None])`` bolds the first
        row's mAP and links the first row's first cell to ``run_url``.
    """
    if isinstance(best, pd.DataFrame):
        marked = best.reindex(index=display.index, columns=display.columns, fill_value=False).fillna(False).to_numpy(bool)
        best = {(int(i), display.columns[j]) for i, j in zip(*marked.nonzero())}
    best = best or set()
    if links is not None and len(links) != len(display):
        raise ValueError(f"links has {len(links)} entries for {len(display)} table rows")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in display.columns)
    rows = []
    for i, values in enumerate(display.itertuples(index=False, name=None)):
        cells = []
        for j, (column, value) in enumerate(zip(display.columns, values)):
            text = "" if value is None or (isinstance(value, float) and value != value) else breakable(str(value))
            if (i, column) in best:
                text = f"<b>{text}</b>"
            if j == 0 and links is not None and links[i]:
                text = f'<a href="{html.escape(links[i], quote=True)}">{text}</a>'
            cells.append(f"<td>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="results">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody>\n</table>"


def write_html(
    path: Path,
    *,
    title: str,
    description: str,
    table_html: str,
    notes: list[str],
    figures: list[tuple[str, go.Figure]],
    data: dict | None = None,
) -> Path:
    """Write the report page to ``path`` atomically and return ``path``.

    Args:
        path: the page, e.g. ``reports/<study>/index.html``; parent folders are created.
        title: the page title and heading (plain text).
        description: a paragraph under the heading (plain text).
        table_html: the main table as HTML (see `table_to_html`), inserted as is.
        notes: plain-text remarks under the table (unresolved deltas, seeds needed, ...).
        figures: ``(name, figure)`` pairs, drawn in order under ``<h2>name</h2>``, each in a
            ``<div id="fig-<slug of name>">``.
        data: the baseline's data summary (data/summary.py), shown as a Data section; None: none.
    """
    path = Path(path)
    taken: set[str] = set()
    sections = []
    for name, fig in figures:
        fid = figure_id(name, taken)
        height = fig.layout.height or 450
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=fid, default_height=f"{height}px",
                          config={"displaylogo": False, "responsive": True})
        sections.append(f'<section class="figure">\n<h2>{html.escape(name)}</h2>\n{div}\n</section>')
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="description">{html.escape(description)}</p>',
        f'<div class="table-wrap">{table_html}</div>',
        f'<ul class="notes">{notes_html}</ul>' if notes else "",
        *sections,
        data_section(data) if data else "",
        "</body>",
        "</html>",
        "",
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def data_section(summary: dict) -> str:
    """The Data section: the numbers ``ablate data`` prints, one column per split (every string escaped)."""
    e = html.escape
    names = list(summary["splits"])
    splits = [summary["splits"][n] for n in names]
    rows = [("images", [x["images"] for x in splits]), ("boxes", [x["boxes"] for x in splits]),
            ("ignored (crowd, difficult)", [x["ignored_boxes"] for x in splits])]
    rows += [(f"class {c}", [x["boxes_per_class"].get(c, 0) for x in splits]) for c in summary["classes"]]
    rows += [("boxes per image: mean / max", [f"{x['boxes_per_image']['mean']:g} / {x['boxes_per_image']['max']}"
                                              for x in splits])]
    rows += [(f"{k} objects after resize / as scored", [f"{x['sizes_after_resize'][k]} / {x['sizes_scored'][k]}"
                                                        for x in splits]) for k in ("small", "medium", "large")]
    rows += [("image sizes: distinct", [x["image_sizes"]["distinct"] for x in splits])]
    kinds = sorted({k for x in splits for k in x["repairs"]})
    rows += [(f"repair: {k}", [x["repairs"].get(k, 0) for x in splits]) for k in kinds]
    head = "".join(f"<th>{e(n)}</th>" for n in names)
    body = "".join(f"<tr><td>{e(label)}</td>" + "".join(f"<td>{e(str(v))}</td>" for v in values) + "</tr>"
                   for label, values in rows)
    d = summary["duplicates"]
    notes = [f"duplicate files: {d['files']} in {d['groups']} group(s), {d['across_splits']} across splits",
             *summary["warnings"]]
    return (f'<section class="data">\n<h2>Data: {e(summary["dataset"])}, sizes after the resize to '
            f'{e(str(summary["image_size"]))} px</h2>\n<div class="table-wrap"><table><thead><tr><th></th>{head}'
            f'</tr></thead><tbody>{body}</tbody></table></div>\n<ul class="notes">'
            + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>\n</section>")
