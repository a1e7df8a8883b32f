"""The comparison table as model zoos print it, from ``variant_summary``: Markdown, CSV, LaTeX.

Columns: ``Network | Dataset | Backbone | style | Lr schd | Mem | mAP | AP50 | APs | APm |
APl``, then the varied factors (headed by their paths, e.g. ``loss.box``), then ``ΔmAP``
(mean and confidence interval vs the baseline), ``verdict``, ``img/s``, ``epochs``, ``status``.
A variant no seed completed shows its AP at the epoch its seeds stopped: ``0.047@2``.
``zoo_table`` gives the display strings and ``best_cells`` which of them are best in
their column, so each writer marks them its own way (bold in Markdown, ``\\textbf`` in
LaTeX, a class in HTML).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from ablate.atomic import atomic_path
from ablate.results.zoo import AP_COLUMNS

ZOO_COLUMNS = ("Network", "Dataset", "Backbone", "style", "Lr schd", "Mem", "mAP", "AP50", "APs", "APm", "APl")
LOWER_BETTER = ("Mem",)
MISSING = "—"


def factors_of(summary: pd.DataFrame) -> list[str]:
    """The factor paths of a summary, from its ``factor.<path>`` columns."""
    return [c[len("factor."):] for c in summary.columns if c.startswith("factor.")]


def delta_header(summary: pd.DataFrame) -> str:
    """``ΔmAP``, or ``Δ<metric>`` when the summary took the delta of another metric."""
    return "Δ" + summary.attrs.get("metric", "mAP")


def table_columns(summary: pd.DataFrame) -> list[str]:
    """The display columns in order: zoo columns, factor paths, delta, verdict, img/s, epochs, status."""
    return [*ZOO_COLUMNS, *factors_of(summary), delta_header(summary), "verdict", "img/s", "epochs", "status"]


def is_baseline(summary: pd.DataFrame) -> pd.Series:
    return summary["variant"] == summary.attrs.get("baseline", summary["variant"].iloc[0])


def _rounded(summary: pd.DataFrame, column: str, percent: bool) -> pd.Series:
    """A numeric column at its display precision (best marks compare what the reader sees)."""
    values = summary[column].astype(float)
    if column in AP_COLUMNS:
        return (values * 100).round(1) if percent else values.round(3)
    return values.round(0 if column == "Mem" else 1)


def format_number(value: float, column: str, percent: bool = False) -> str:
    """One numeric cell: Mem as integer MiB, AP as 0.405 (or 40.5 with percent), img/s as 43.1.

    Example:
        >>> format_number(0.40426, "mAP"), format_number(0.40426, "mAP", True), format_number(106.3, "Mem")
        ('0.404', '40.4', '106')
    """
    if value is None or math.isnan(value):
        return MISSING
    if column in AP_COLUMNS:
        return f"{value * 100:.1f}" if percent else f"{value:.3f}"
    if column == "Mem":
        return f"{value:.0f}"
    return f"{value:.1f}"


def format_rate(median: float, lo: float, hi: float) -> str:
    """The ``img/s`` cell: the median trial and, when its trials differ, the slowest and the fastest.

    Example:
        >>> format_rate(36.84, 32.1, 40.2), format_rate(36.8, 36.8, 36.8)
        ('36.8 (32.1–40.2)', '36.8')
    """
    text = format_number(median, "img/s")
    if not (known(lo) and known(hi)) or round(lo, 1) == round(hi, 1):
        return text
    return f"{text} ({lo:.1f}–{hi:.1f})"


def rate_range(summary: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each row's slowest and fastest trial in img/s (the median itself where the summary has no range)."""
    rate = summary["img/s"].astype(float)
    return (summary["img/s_lo"].astype(float) if "img/s_lo" in summary else rate,
            summary["img/s_hi"].astype(float) if "img/s_hi" in summary else rate)


def format_delta(row: dict, *, baseline: bool = False, percent: bool = False) -> str:
    """The ``ΔmAP`` cell: ``+0.005 [-0.010, +0.020]``, ``+0.005 (1 seed)``, ``—`` for the baseline.

    Args:
        row: a summary row (``dmAP``, ``dmAP_lo``, ``dmAP_hi``, ``n_seeds``).
        baseline: the row is the baseline itself.
        percent: points of AP (one decimal) instead of fractions (three).
    """
    mean = row["dmAP"]
    if baseline or mean is None or math.isnan(mean):
        return MISSING

    def num(x: float) -> str:
        return f"{x * 100:+.1f}" if percent else f"{x:+.3f}"

    lo, hi = row["dmAP_lo"], row["dmAP_hi"]
    if math.isnan(lo) or math.isnan(hi):
        pairs = row.get("n_pairs", row["n_seeds"])
        return f"{num(mean)} ({'1 seed' if pairs <= 1 else 'no interval'})"
    return f"{num(mean)} [{num(lo)}, {num(hi)}]"


def format_verdict(row: dict, *, baseline: bool = False) -> str:
    """The verdict cell: ``better``, ``worse``, ``equivalent``, ``unresolved (~9 seeds)``, ``stopped@2``.

    Example:
        >>> format_verdict({"verdict": "unresolved", "seeds_needed": 9})
        'unresolved (~9 seeds)'
    """
    verdict = row.get("verdict")
    if baseline or not isinstance(verdict, str):
        return MISSING
    if verdict == "unresolved":
        need = row.get("seeds_needed")
        return "unresolved" if need is None or need != need else f"unresolved (~{int(need)} seeds)"
    return verdict


def zoo_table(summary: pd.DataFrame, *, percent: bool = False) -> pd.DataFrame:
    """The table's display strings, one row per summary row, columns ``table_columns(summary)``.

    Args:
        summary: ``variant_summary`` output (baseline first).
        percent: AP columns and the delta in percent with one decimal instead of fractions.
    """
    baseline = is_baseline(summary)
    out = pd.DataFrame(index=summary.index)
    for column in ZOO_COLUMNS[:5]:
        out[column] = summary[column].fillna("").astype(str)
    at = summary["at_epoch"] if "at_epoch" in summary else pd.Series(None, index=summary.index)
    other = ~same_seeds(summary)
    for column in ZOO_COLUMNS[5:]:
        out[column] = [format_number(float(x), column, percent) + _mark(column, x, k, o)
                       for x, k, o in zip(summary[column], at, other)]
    for path in factors_of(summary):
        out[path] = summary[f"factor.{path}"].fillna("").astype(str)
    out[delta_header(summary)] = [format_delta(row, baseline=b, percent=percent)
                                  for row, b in zip(summary.to_dict("records"), baseline)]
    out["verdict"] = [format_verdict(row, baseline=b) for row, b in zip(summary.to_dict("records"), baseline)]
    lo, hi = rate_range(summary)
    out["img/s"] = [format_rate(float(x), a, b) for x, a, b in zip(summary["img/s"], lo, hi)]
    out["epochs"] = summary["epochs"].astype(int).astype(str)
    out["status"] = summary["status"].astype(str)
    return out


def known(x) -> bool:
    return x is not None and x == x


def same_seeds(summary: pd.DataFrame) -> pd.Series:
    """True for rows whose AP means cover the baseline's completed seeds exactly (their means compare)."""
    if "seeds" not in summary:
        return pd.Series(True, index=summary.index)
    base = set(summary.loc[is_baseline(summary), "seeds"].iloc[0])
    return summary["seeds"].map(lambda seeds: set(seeds) == base)


def _mark(column: str, value, at_epoch, other_seeds: bool) -> str:
    """``@k`` on an AP value taken at a stop epoch, ``*`` on a final one averaged over other seeds than the baseline's."""
    if column not in AP_COLUMNS or not known(value):
        return ""
    if known(at_epoch):
        return f"@{int(at_epoch)}"
    return "*" if other_seeds else ""


def best_cells(summary: pd.DataFrame, *, percent: bool = False) -> pd.DataFrame:
    """True where a cell of ``zoo_table(summary, percent=percent)`` is its column's best.

    Best is the highest AP and the lowest Mem, compared at display precision (ties are all
    marked); a column with fewer than two values marks nothing.  AP values are ranked only among
    final means over the baseline's seeds: a value at a stop epoch, or a mean over other seeds (one
    lucky seed against the baseline's two), is not a result to rank.  img/s is never marked: trials run
    at different times on a shared machine, baseline first, so a gap between variants can be when they
    ran, not what they are (a bold 45.7 (44.9–46.0) against 39.4 (38.0–44.8) for a box loss in a fresh
    clone's `make run`).
    """
    best = pd.DataFrame(False, index=summary.index, columns=table_columns(summary))
    final = summary["at_epoch"].isna() if "at_epoch" in summary else pd.Series(True, index=summary.index)
    final &= same_seeds(summary)
    for column in (*AP_COLUMNS, *LOWER_BETTER):
        values = _rounded(summary, column, percent)
        if column in AP_COLUMNS:
            values = values.where(final)
        if values.notna().sum() >= 2:
            best[column] = values == (values.min() if column in LOWER_BETTER else values.max())
    return best


def _numeric(column: str) -> bool:
    """Right-aligned columns: the numbers and the delta."""
    return column in ("Mem", *AP_COLUMNS, "img/s", "epochs") or column.startswith("Δ")


def markdown(table: pd.DataFrame, best: pd.DataFrame) -> str:
    """A GitHub pipe table; best cells in bold, numbers right-aligned."""
    def cell(text: str) -> str:
        # Markdown renders inline HTML, and variant names and factor levels come from the study file
        return html.escape(str(text), quote=False).replace("*", r"\*").replace("|", r"\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "|".join("---:" if _numeric(c) else "---" for c in table.columns) + "|"]
    for texts, marks in zip(table.to_numpy(), best[list(table.columns)].to_numpy()):
        lines.append("| " + " | ".join(f"**{cell(x)}**" if m else cell(x) for x, m in zip(texts, marks)) + " |")
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}", "<": r"\textless{}",
        ">": r"\textgreater{}", "Δ": r"$\Delta$", "—": "---", "–": "--"}


def tex_escape(text: str) -> str:
    """LaTeX-safe text for pdflatex: special characters escaped, ``Δ``, ``—`` and ``–`` spelled out."""
    return "".join(_TEX.get(c, c) for c in str(text))


def latex(table: pd.DataFrame, best: pd.DataFrame) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); best cells in ``\\textbf``."""
    spec = "".join("r" if _numeric(c) else "l" for c in table.columns)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(tex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    for texts, marks in zip(table.to_numpy(), best[list(table.columns)].to_numpy()):
        lines.append(" & ".join(rf"\textbf{{{tex_escape(x)}}}" if m else tex_escape(x) for x, m in zip(texts, marks))
                     + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The table as plain numbers: the display column order, the delta as ``dmAP, dmAP_lo, dmAP_hi`` and the
    verdict's numbers (adjusted ``p``, ``p_equiv``, ``seeds_needed``, the bootstrap interval, ``p_improve``).

    AP columns stay fractions and Mem stays MiB (unrounded) whatever the display.
    """
    columns = [*ZOO_COLUMNS, "at_epoch", *(f"factor.{p}" for p in factors_of(summary)),
               "dmAP", "dmAP_lo", "dmAP_hi", "p", "p_equiv", "verdict", "seeds_needed", "boot_lo", "boot_hi",
               "p_improve", "img/s", "img/s_lo", "img/s_hi", "epochs", "status"]
    out = summary[columns].copy()
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c].map(csv_text)
    return out.rename(columns={f"factor.{p}": p for p in factors_of(summary)})


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what Excel, LibreOffice and Sheets read as a formula


def csv_text(value):
    """A text cell a spreadsheet shows as text: one beginning like a formula gets a leading ``'``
    (OWASP's CSV-injection advice); numbers and other values are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def cross_table(summary: pd.DataFrame, *, percent: bool = False) -> pd.DataFrame | None:
    """A two-factor grid as a cross table: rows the first factor's levels, columns the second's, cells the metric.

    The ATSS paper's cross experiment reads so (RetinaNet and FCOS, each with either sample definition):
    the main table lists the variants one per row, this shows each factor's effect and whether they
    interact.  None unless the study varies exactly two factors, each pair of levels one variant, and some
    variant changes both (a one-at-a-time study is an L, not a grid; a grid's missing cells read ``—``).
    """
    factors = factors_of(summary)
    if len(factors) != 2:
        return None
    first, second = (summary[f"factor.{f}"].astype(str) for f in factors)
    if pd.MultiIndex.from_arrays([first, second]).duplicated().any():
        return None
    if len(summary) <= first.nunique() + second.nunique() - 1:
        return None
    display = zoo_table(summary, percent=percent)
    metric = summary.attrs.get("metric", "mAP")
    cells = display[metric if metric in display else "mAP"]
    table = pd.DataFrame({"row": first, "column": second, "cell": cells}).pivot(index="row", columns="column",
                                                                              values="cell")
    table = table.reindex(index=first.unique(), columns=second.unique()).fillna(MISSING)
    table.index.name, table.columns.name = None, None
    return table.reset_index(names=f"{factors[0]} \\ {factors[1]}")


def step_table(steps: pd.DataFrame, *, percent: bool = False) -> pd.DataFrame:
    """A cumulative study's steps for display: each row's trick, its metric, its Δ against the row above, verdict."""
    metric = steps.attrs.get("metric", "mAP")
    rows = steps.to_dict("records")
    return pd.DataFrame({
        "step": [f"{r['previous']} → {r['variant_name']}" for r in rows],
        metric: [format_number(r[metric], metric if metric in AP_COLUMNS else "mAP", percent) for r in rows],
        f"Δ{metric} (step)": [format_delta(r, percent=percent) for r in rows],
        "verdict": [format_verdict(r) for r in rows],
    })


def write_tables(summary: pd.DataFrame, out_dir: Path, *, percent: bool = False,
                 steps: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write ``table.md`` (with the cross table of a two-factor grid, or a cumulative study's steps),
    ``table.csv`` and ``table.tex``, atomically.

    Args:
        summary: ``variant_summary`` output.
        out_dir: created when missing (e.g. ``reports/<study>``).
        percent: AP in percent in the Markdown and LaTeX tables (the CSV keeps fractions).
        steps: ``step_summary`` output (a cumulative study), shown under the main table.

    Returns:
        ``{"md": path, "csv": path, "tex": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table, best = zoo_table(summary, percent=percent), best_cells(summary, percent=percent)
    paths = {"md": out_dir / "table.md", "csv": out_dir / "table.csv", "tex": out_dir / "table.tex"}
    cross = cross_table(summary, percent=percent)
    extra = "" if cross is None else "\n" + markdown(cross, pd.DataFrame(False, index=cross.index,
                                                                       columns=cross.columns))
    if steps is not None and not steps.empty:
        shown = step_table(steps, percent=percent)
        extra += "\n" + markdown(shown, pd.DataFrame(False, index=shown.index, columns=shown.columns))
    _write_text(paths["md"], markdown(table, best) + extra)
    _write_text(paths["csv"], csv_frame(summary).to_csv(index=False))
    _write_text(paths["tex"], latex(table, best))
    return paths
