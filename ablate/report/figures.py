"""The report's plotly figures, each built from aggregates so that a large study stays light.

Every function takes DataFrames (the store's ``trials``/``epochs`` rows or the per-variant
summary) and returns a ``plotly.graph_objects.Figure``.  Rows are reduced with pandas
first (one point per variant and epoch, one bar per variant), so 10,000 trials x 50 epochs
become a few hundred traces, not half a million points.  Missing data gives a figure that
says what is missing instead of an exception: a report must always be written.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative

from ablate.report.table import rate_range, same_seeds

PALETTE = qualitative.Plotly + qualitative.D3[1::2]
STATUS_COLORS = {"completed": "#2ca02c", "pruned": "#ff7f0e", "failed": "#d62728"}
# x column of `pareto` -> (axis title, lower is better)
PARETO_AXES = {
    "Mem": ("peak training memory (MiB), lower is better", True),
    "img/s": ("throughput (img/s), higher is better", False),
}
MAX_TEXT_LABELS = 30  # above this, names go to the hover only


def _color(i: int, alpha: float | None = None) -> str:
    color = PALETTE[i % len(PALETTE)]
    if alpha is None:
        return color
    r, g, b = hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"


def _notice(title: str, message: str) -> go.Figure:
    """An empty figure that says why there is nothing to plot."""
    fig = go.Figure()
    fig.add_annotation(text=html.escape(message), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font_size=14)
    fig.update_layout(title=title, height=260, xaxis_visible=False, yaxis_visible=False, template="plotly_white")
    return fig


def _labels(summary: pd.DataFrame) -> pd.Series:
    """One unique axis label per variant: its name, prefixed by its number when names repeat."""
    variant = summary["variant"].astype(str) if "variant" in summary else pd.Series(summary.index.astype(str), index=summary.index)
    if "variant_name" not in summary:
        return variant
    names = summary["variant_name"].fillna(variant).astype(str)
    return names if names.is_unique else variant + ": " + names


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def curves(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str = "mAP") -> go.Figure:
    """``metric`` per epoch per variant: the mean over seeds, a min..max band, pruning points.

    Failed trials are left out of the lines (their last epochs are often diverged) and
    counted in the variant's legend entry and hover, with their reasons.  A pruned
    trial's last epoch is marked with an ``x`` at the mean value of the trials pruned
    there; the hover says how many.

    Args:
        trials: one row per trial (``trial_id, variant, variant_name, status``, ``reason``).
        epochs: one row per trial and epoch (``trial_id, epoch`` and ``metric``).
        metric: an epoch column, e.g. ``"mAP"``, ``"AP50"``, ``"loss"``.
    """
    title = f"{metric} per epoch: mean over the seeds that ran every epoch shown, band = min..max"
    if metric not in epochs.columns:
        numeric = [c for c in epochs.columns if c not in ("trial_id", "epoch") and pd.api.types.is_numeric_dtype(epochs[c])]
        raise ValueError(f"no epoch column {metric!r}; choose one of {numeric}")
    if trials.empty:
        return _notice(title, "No trials in this results store.")
    meta = trials[["trial_id", "variant", "variant_name", "status"]]
    rows = epochs[["trial_id", "epoch", metric]].merge(meta, on="trial_id", how="inner")

    kept = rows[rows["status"] != "failed"].dropna(subset=[metric])
    # the line of a variant is the mean of the same seeds at every epoch: those that reached its last epoch
    # (a pruned seed ends in an x, not in a mean whose members change from one epoch to the next)
    reach = kept.groupby("trial_id")["epoch"].transform("max")
    kept = kept[reach == kept.groupby("variant")["epoch"].transform("max")]
    stats = kept.groupby(["variant", "epoch"])[metric].agg(["mean", "min", "max", "count"]).reset_index()
    last = rows.loc[rows.groupby("trial_id")["epoch"].idxmax()] if not rows.empty else rows
    pruned = last[last["status"] == "pruned"].groupby(["variant", "epoch"])[metric].agg(["mean", "count"]).reset_index()

    failed = trials[trials["status"] == "failed"]
    reasons = failed["reason"].fillna("") if "reason" in failed else pd.Series("", index=failed.index)
    failed_note = {
        v: f"{len(g)} failed: " + html.escape("; ".join(sorted({r or "no reason" for r in reasons[g.index]})[:3]))
        for v, g in failed.groupby("variant")
    }
    names = meta.drop_duplicates("variant").set_index("variant")["variant_name"].astype(str)
    by_variant = dict(tuple(stats.groupby("variant")))
    pruned_by_variant = dict(tuple(pruned.groupby("variant")))

    traces = []
    for i, variant in enumerate(sorted(names.index)):
        name, note = names[variant], failed_note.get(variant, "")
        label = f"{name} ({note.split(':')[0]})" if note else name
        group = f"v{variant}"
        s = by_variant.get(variant)
        if s is None:  # every trial failed before reporting: keep it visible in the legend
            traces.append(go.Scatter(x=[None], y=[None], mode="markers", name=label, legendgroup=group,
                                     marker=dict(color=_color(i), symbol="x")))
            continue
        traces.append(go.Scatter(x=s["epoch"], y=s["max"], mode="lines", line=dict(width=0), legendgroup=group,
                                 showlegend=False, hoverinfo="skip"))
        traces.append(go.Scatter(x=s["epoch"], y=s["min"], mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor=_color(i, 0.18), legendgroup=group, showlegend=False, hoverinfo="skip"))
        traces.append(go.Scatter(
            x=s["epoch"], y=s["mean"], mode="lines+markers", name=label, legendgroup=group,
            line=dict(color=_color(i), width=2), marker=dict(size=4),
            customdata=np.stack([s["count"], s["min"], s["max"]], axis=1),
            hovertemplate=(f"<b>{html.escape(name)}</b><br>epoch %{{x}}<br>mean %{{y:.3f}}"
                           "<br>min..max %{customdata[1]:.3f}..%{customdata[2]:.3f}<br>%{customdata[0]} seeds"
                           + (f"<br>{note}" if note else "") + "<extra></extra>"),
        ))
        p = pruned_by_variant.get(variant)
        if p is not None:
            traces.append(go.Scatter(
                x=p["epoch"], y=p["mean"], mode="markers", legendgroup=group, showlegend=False,
                marker=dict(symbol="x", size=11, color=_color(i), line=dict(width=1, color="black")),
                customdata=p["count"],
                hovertemplate=f"<b>{html.escape(name)}</b><br>%{{customdata}} pruned after epoch %{{x}}<br>{metric} %{{y:.3f}}<extra></extra>",
            ))
    if not pruned.empty:  # one legend entry explains the x markers
        traces.append(go.Scatter(x=[None], y=[None], mode="markers", name="pruned here",
                                 marker=dict(symbol="x", size=11, color="white", line=dict(width=1, color="black"))))
    fig = go.Figure(traces)
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title=metric, height=480, template="plotly_white",
                      hovermode="closest")
    if not stats.empty and stats["epoch"].max() <= 20:  # whole epochs only, no 1.5 ticks
        fig.update_xaxes(tick0=1, dtick=1)
    return fig


def forest(summary: pd.DataFrame) -> go.Figure:
    """Δ<metric> vs the baseline per variant with its interval (``dmAP_lo``..``dmAP_hi``), marked by verdict.

    Better and worse are filled and coloured, equivalent filled blue, unresolved grey open
    circles, a variant stopped by the scheduler an open square (its Δ at the stop epoch), and
    variants without an interval (one seed) open diamonds with no bar.  Variants without a
    delta (e.g. all trials failed) are left out.  The title names the metric and the confidence.
    """
    metric, confidence = summary.attrs.get("metric", "mAP"), summary.attrs.get("confidence", 0.95)
    title = f"Δ{metric} vs baseline, {confidence:.0%} interval over seeds"
    if "variant" in summary and len(summary):  # the baseline is the reference line at 0, not a point
        summary = summary[summary["variant"] != summary.attrs.get("baseline", summary["variant"].iloc[0])]
    d = _numeric(summary, "dmAP")
    if summary.empty or d.isna().all():
        return _notice(title, f"No variant has a Δ{metric} (no completed trials to compare with the baseline).")
    lo, hi = _numeric(summary, "dmAP_lo"), _numeric(summary, "dmAP_hi")
    labels = _labels(summary)
    has_ci = lo.notna() & hi.notna() & d.notna()
    verdict = summary["verdict"].fillna("").astype(str) if "verdict" in summary else pd.Series("", index=summary.index)
    need = summary["seeds_needed"] if "seeds_needed" in summary else pd.Series(None, index=summary.index)

    hover = pd.DataFrame({
        "label": labels.map(html.escape),
        "ci": [f"[{a:+.3f}, {b:+.3f}]" if ok else "no interval" for a, b, ok in zip(lo, hi, has_ci)],
        "n": summary["n_pairs"].astype(str) if "n_pairs" in summary else "?",
        "verdict": [v + (f", ~{int(n)} seeds would settle it" if v == "unresolved" and n is not None and n == n
                         else "") for v, n in zip(verdict, need)],
    }, index=summary.index)
    template = (f"<b>%{{customdata[0]}}</b><br>Δ{metric} %{{x:+.3f}} %{{customdata[1]}}<br>"
                "%{customdata[2]} paired seeds: %{customdata[3]}<extra></extra>")

    stopped = verdict.str.startswith("stopped@")
    groups = [
        ("better", has_ci & (verdict == "better"), dict(color=STATUS_COLORS["completed"], symbol="circle"), True),
        ("worse", has_ci & (verdict == "worse"), dict(color=STATUS_COLORS["failed"], symbol="circle"), True),
        ("equivalent", has_ci & (verdict == "equivalent"), dict(color="#1f77b4", symbol="circle"), True),
        ("unresolved", has_ci & (verdict == "unresolved"), dict(color="grey", symbol="circle-open"), True),
        ("stopped early (Δ at the stop epoch)", d.notna() & stopped, dict(color=STATUS_COLORS["pruned"],
                                                                          symbol="square-open"), True),
        ("no interval (one seed)", ~has_ci & d.notna() & ~stopped, dict(color="black", symbol="diamond-open"), False),
    ]
    fig = go.Figure()
    for name, mask, marker, bars in groups:
        if not mask.any():
            continue
        error = dict(type="data", symmetric=False, array=(hi - d)[mask].fillna(0), arrayminus=(d - lo)[mask].fillna(0),
                     color=marker["color"], thickness=1.5, width=4) if bars else None
        fig.add_trace(go.Scatter(x=d[mask], y=labels[mask], mode="markers", name=name, error_x=error,
                                 marker=dict(size=10, line=dict(width=1.5, color=marker["color"]), **marker),
                                 customdata=hover[mask].to_numpy(), hovertemplate=template))
    fig.add_vline(x=0, line=dict(color="black", width=1, dash="dash"))
    order = labels[d.notna()].tolist()
    fig.update_layout(title=title, xaxis_title=f"Δ{metric} vs baseline", template="plotly_white",
                      height=min(max(320, 160 + 28 * len(order)), 2000),
                      yaxis=dict(categoryorder="array", categoryarray=order, autorange="reversed", type="category"))
    return fig


def _front(x: pd.Series, y: pd.Series, lower_is_better: bool) -> pd.Index:
    """Index of the points no other point beats on both x and y (y higher is better)."""
    order = pd.DataFrame({"x": x if lower_is_better else -x, "y": y}).sort_values(["x", "y"], ascending=[True, False])
    best = order["y"].cummax().shift(fill_value=-np.inf)
    return order.index[order["y"] > best]


def _trial_range(summary: pd.DataFrame, x: str, xs: pd.Series, mask: pd.Series) -> dict | None:
    """img/s whiskers from the slowest to the fastest trial (``img/s_lo``, ``img/s_hi``): the trials ran at
    different times on a shared machine, and the whiskers show how far apart that alone put them."""
    if x != "img/s":
        return None
    lo, hi = (r[mask] for r in rate_range(summary))
    return dict(type="data", symmetric=False, array=(hi - xs[mask]).fillna(0).tolist(),
                arrayminus=(xs[mask] - lo).fillna(0).tolist(), color="#9ab", thickness=1)


def pareto(summary: pd.DataFrame, x: str = "Mem") -> go.Figure:
    """mAP against ``x`` (``"Mem"``, lower is better, or ``"img/s"``, higher is better, its whiskers the
    slowest and the fastest trial) with the Pareto front.

    The front is drawn as a step line over the variants whose mAP is a final mean over the
    baseline's seeds; the others (a value at a stop epoch, a mean over other seeds) are grey
    markers, off the front.
    """
    if x not in PARETO_AXES:
        raise ValueError(f"pareto x must be one of {sorted(PARETO_AXES)}, got {x!r}")
    axis_title, lower_is_better = PARETO_AXES[x]
    title = f"mAP against {x}, Pareto front"
    xs, ys = _numeric(summary, x), _numeric(summary, "mAP")
    ok = xs.notna() & ys.notna()
    if summary.empty or not ok.any():
        return _notice(title, f"No variant has both mAP and {x}.")
    labels = _labels(summary)
    status = summary["status"].astype(str) if "status" in summary else pd.Series("completed", index=summary.index)
    final = summary["at_epoch"].isna() if "at_epoch" in summary else status.str.startswith("completed")
    partial = ~(final & same_seeds(summary))
    full = ok & ~partial
    front = _front(xs[full], ys[full], lower_is_better) if full.any() else pd.Index([])

    show_text = ok.sum() <= MAX_TEXT_LABELS
    hover = np.stack([labels.map(html.escape), status.map(html.escape)], axis=1)
    template = f"<b>%{{customdata[0]}}</b><br>{x} %{{x:.1f}}<br>mAP %{{y:.3f}}<br>%{{customdata[1]}}<extra></extra>"
    fig = go.Figure()
    on_front = xs.index.isin(front)
    for name, mask, marker in [
        ("on the front", full & on_front, dict(color="#1f77b4", size=11, symbol="circle")),
        ("dominated", full & ~on_front, dict(color="#1f77b4", size=9, symbol="circle-open")),
        ("not comparable (stopped early, or other seeds)", ok & partial, dict(color="grey", size=9, symbol="x-open")),
    ]:
        if mask.any():
            fig.add_trace(go.Scatter(x=xs[mask], y=ys[mask], mode="markers+text" if show_text else "markers", name=name,
                                     text=labels[mask] if show_text else None, textposition="top center",
                                     marker=marker, customdata=hover[mask.to_numpy()], hovertemplate=template,
                                     error_x=_trial_range(summary, x, xs, mask)))
    if len(front):
        f = pd.DataFrame({"x": xs[front], "y": ys[front]}).sort_values("x")
        fig.add_trace(go.Scatter(x=f["x"], y=f["y"], mode="lines", name="Pareto front", hoverinfo="skip",
                                 line=dict(color="#1f77b4", shape="hv" if lower_is_better else "vh", dash="dot")))
    fig.update_layout(title=title, xaxis_title=axis_title, yaxis_title="mAP", height=480, template="plotly_white")
    return fig


def size_bars(summary: pd.DataFrame) -> go.Figure:
    """APs / APm / APl per variant as grouped bars; a variant's label says ``@k`` when its values are at
    its stop epoch and ``*`` when they average other seeds than the baseline's, as the table does."""
    title = "AP by object size"
    sizes = [c for c in ("APs", "APm", "APl") if c in summary]
    if summary.empty or not sizes or all(_numeric(summary, c).isna().all() for c in sizes):
        return _notice(title, "No variant has APs/APm/APl.")
    at = summary["at_epoch"] if "at_epoch" in summary else pd.Series(None, index=summary.index)
    other = ~same_seeds(summary)
    labels = _labels(summary) + [f" @{int(k)}" if k is not None and k == k else (" *" if o else "")
                                 for k, o in zip(at, other)]
    fig = go.Figure([
        go.Bar(x=labels, y=_numeric(summary, c), name=c, marker_color=color,
               hovertemplate=f"<b>%{{x}}</b><br>{c} %{{y:.3f}}<extra></extra>")
        for c, color in zip(sizes, ("#9ecae1", "#4292c6", "#08519c"))
    ])
    fig.update_layout(title=title, barmode="group", yaxis_title="AP", height=440, template="plotly_white",
                      xaxis=dict(type="category", tickangle=-30 if len(labels) > 6 else 0))
    return fig


def timeline(trials: pd.DataFrame) -> go.Figure:
    """One horizontal bar per trial from ``started_at`` to ``ended_at``, coloured by status.

    Retried trials are hatched and their retry count is in the hover.  A store written
    before timestamps were recorded gives a figure that says so.
    """
    title = "Trials over time"
    if not {"started_at", "ended_at"} <= set(trials.columns):
        return _notice(title, "This results store has no trial timestamps (started_at/ended_at); "
                              "stores written by newer versions of ablate record them.")
    start, end = _numeric(trials, "started_at"), _numeric(trials, "ended_at")
    ok = start.notna() & end.notna() & (end >= start)
    if not ok.any():
        return _notice(title, "No trial in this store has both a start and an end timestamp.")
    t = trials[ok].assign(_start=start[ok], _end=end[ok]).sort_values("_start")
    t0 = t["_start"].min()
    retries = _numeric(t, "retries").fillna(0).astype(int)
    labels = ("v" + t["variant"].astype(str) + " s" + t["seed"].astype(str) + " · " + t["trial_id"].astype(str).str[:6])
    status = t["status"].astype(str)
    status_label = t["status_label"].astype(str) if "status_label" in t else status
    fmt = "%Y-%m-%d %H:%M:%S"
    hover = np.stack([
        t["variant_name"].astype(str).map(html.escape), t["seed"].astype(str), status_label.map(html.escape),
        pd.to_datetime(t["_start"], unit="s").dt.strftime(fmt), pd.to_datetime(t["_end"], unit="s").dt.strftime(fmt),
        retries.astype(str), t["trial_id"].astype(str),
    ], axis=1)
    template = ("<b>%{customdata[0]}</b> seed %{customdata[1]}<br>%{customdata[2]}<br>%{customdata[3]} .. %{customdata[4]}"
                "<br>%{x:.1f} min<br>retries: %{customdata[5]}<br>trial %{customdata[6]}<extra></extra>")
    fig = go.Figure()
    for s in [s for s in STATUS_COLORS if (status == s).any()] + sorted(set(status) - set(STATUS_COLORS)):
        m = (status == s).to_numpy()
        fig.add_trace(go.Bar(
            orientation="h", y=labels[m], base=(t["_start"][m] - t0) / 60, x=(t["_end"][m] - t["_start"][m]) / 60,
            name=f"{s} ({m.sum()})", marker=dict(color=STATUS_COLORS.get(s, "grey"),
                                               pattern=dict(shape=np.where(retries[m] > 0, "/", ""))),
            customdata=hover[m], hovertemplate=template,
        ))
    missing = len(trials) - len(t)
    note = f" ({missing} trials without timestamps not shown)" if missing else ""
    fig.update_layout(
        title=f"{title}: one bar per trial, hatched = retried{note}", barmode="overlay", template="plotly_white",
        xaxis_title="minutes since the first trial started", height=min(max(300, 120 + 16 * len(t)), 1000),
        yaxis=dict(type="category", categoryorder="array", categoryarray=labels.tolist(), autorange="reversed",
                   showticklabels=len(t) <= 60),
    )
    return fig
