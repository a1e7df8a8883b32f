"""``ablate report``: a study's tables and HTML page from its Parquet store or from MLflow alone.

Writes ``reports/<study>/`` (or ``--out``): ``table.md``, ``table.csv``, ``table.tex`` and
``index.html``, and logs the page and the Markdown table to the study's MLflow parent
run when the tracking store is reachable.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from html import escape
from pathlib import Path

import pandas as pd

from ablate.errors import DataError
from ablate.report.figures import curves, forest, pareto, size_bars, timeline
from ablate.report.html import table_to_html, write_html
from ablate.report.mlflow_summary import log_variant_summaries
from ablate.report.notes import notes
from ablate.report.table import best_cells, cross_table, step_table, write_tables, zoo_table
from ablate.results.aggregate import factor_paths, load_frames, step_summary, variant_summary
from ablate.results.early import early_stopping_note, rung_agreement
from ablate.results.race import race_stops
from ablate.results.store import read_data_summary, read_decision
from ablate.status import PRUNED


@dataclass(frozen=True)
class Source:
    """Where a study's numbers come from and where its MLflow runs are."""

    study: str
    description: str = ""
    results: Path = Path("results")
    tracking_uri: str | None = None
    experiment: str | None = None  # None: the study name


def baseline_index(trials: pd.DataFrame, baseline: str | None) -> int:
    """``--baseline``: a variant index or name; None: variant 0."""
    if baseline is None:
        return 0
    names = trials.drop_duplicates("variant").set_index("variant")["variant_name"]
    if baseline.lstrip("-").isdigit() and int(baseline) in names.index:
        return int(baseline)
    match = names[names == baseline]
    if match.empty:
        choices = ", ".join(f"{i} ({n})" for i, n in names.sort_index().items())
        raise DataError(f"--baseline {baseline!r} is not a variant of this study; choose one of: {choices}")
    return int(match.index[0])


def _mlflow(source: Source):
    """(client, experiment id, parent run id) or None when the store cannot be reached."""
    try:
        from ablate.mlflow_tags import bound_http_retries, study_run
        from ablate.mlflow_tags import client as mlflow_client

        bound_http_retries()  # a report from Parquet waits seconds, not minutes, for a server that is down
        client = mlflow_client(source.tracking_uri)
        experiment = client.get_experiment_by_name(source.experiment or source.study)
        if experiment is None:
            return None
        parent = study_run(client, experiment.experiment_id, source.study)
        return client, experiment.experiment_id, parent.info.run_id if parent is not None else None
    except Exception:  # noqa: BLE001 -- a report from Parquet must not need a tracking server
        return None


def _logged_data(tracking) -> dict | None:
    """The data summary logged on the study's MLflow parent run (``data.json``), or None."""
    if not tracking or not tracking[2]:
        return None
    client, _, parent = tracking
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return json.loads(Path(client.download_artifacts(parent, "data.json", tmp)).read_text())
    except Exception:  # noqa: BLE001 -- a study from before data.json, or an artifact store out of reach
        return None


def _notes(summary: pd.DataFrame, trials: pd.DataFrame, epochs: pd.DataFrame) -> list[str]:
    """The table's notes, and whether the epochs trials were stopped at ranked trials as the end did."""
    metric = summary.attrs["metric"]
    stopped = trials.loc[trials["status"] == PRUNED, "epochs"].dropna().astype(int).tolist() if "status" in trials else []
    early = early_stopping_note(rung_agreement(trials, epochs, metric), stopped, metric)
    return notes(summary) + ([early] if early else [])


def run_links(summary: pd.DataFrame, tracking_uri: str, experiment_id: str) -> list[str | None]:
    """Each variant's first MLflow run in the UI (``mlflow ui`` locally, the server itself for http URIs)."""
    ui = tracking_uri.rstrip("/") if tracking_uri.startswith("http") else "http://127.0.0.1:5000"
    return [f"{ui}/#/experiments/{experiment_id}/runs/{ids[0]}" if len(ids) else None
            for ids in summary["mlflow_run_ids"]]


def build_report(source: Source, *, out_dir: Path | None = None, from_mlflow: bool = False,
                 baseline: str | None = None, percent: bool = False) -> dict[str, Path]:
    """Write the study's report; returns the written files by kind (md, csv, tex, html)."""
    if from_mlflow:
        from ablate.results.mlflow_source import frames_from_mlflow

        trials, epochs, info = frames_from_mlflow(source.study, uri=source.tracking_uri, experiment=source.experiment)
        description, decision = source.description or info["description"], info["decision"]
    else:
        trials, epochs = load_frames(Path(source.results) / source.study)
        description, decision = source.description, read_decision(Path(source.results) / source.study)
        if baseline is None:  # the race judged against variant 0: its stops are verdicts against it
            decision = {**decision, "stops": race_stops(Path(source.results) / source.study)}
    if trials.empty:
        raise DataError(f"study '{source.study}' has no recorded trial yet; run it first (ablate run)")
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / source.study
    summary = variant_summary(trials, factors=factor_paths(trials), baseline=baseline_index(trials, baseline),
                              epochs=epochs, **decision)
    metric = summary.attrs["metric"]
    steps = step_summary(trials, **{k: v for k, v in decision.items() if k != "stops"})
    paths = write_tables(summary, out_dir, percent=percent, steps=steps)

    tracking = _mlflow(source)
    links = run_links(summary, tracking[0].tracking_uri, tracking[1]) if tracking else None
    display = zoo_table(summary, percent=percent)
    display.insert(0, "variant", summary["variant_name"].astype(str))
    best = best_cells(summary, percent=percent)
    best.insert(0, "variant", False)
    figures = [(f"{metric} per epoch", curves(trials, epochs, metric)), (f"Δ{metric} against the baseline", forest(summary)),
               ("mAP vs Mem", pareto(summary, x="Mem")), ("mAP vs img/s", pareto(summary, x="img/s")),
               ("APs, APm, APl", size_bars(summary)), ("Trials over time", timeline(trials))]
    data = _logged_data(tracking) if from_mlflow else read_data_summary(Path(source.results) / source.study)
    table_html = table_to_html(display, best=best, links=links)
    cross = cross_table(summary, percent=percent)
    if cross is not None:  # a two-factor grid, e.g. the ATSS cross experiment (detector x assigner)
        rows, columns = factor_paths(trials)
        table_html += f"\n<h2>{escape(metric)}: {escape(rows)} by {escape(columns)}</h2>\n{table_to_html(cross)}"
    if steps is not None and not steps.empty:  # a cumulative study: what each added trick changed
        table_html += (f"\n<h2>Each step against the row above (paired by seed, {steps.attrs['correction']} across "
                       f"the steps)</h2>\n{table_to_html(step_table(steps, percent=percent))}")
    paths["html"] = write_html(out_dir / "index.html", title=f"ablate: {source.study}", description=description,
                               table_html=table_html, notes=_notes(summary, trials, epochs),
                               figures=figures, data=data)
    if tracking and tracking[2]:
        client, experiment_id, parent = tracking
        for kind in ("html", "md"):
            client.log_artifact(parent, str(paths[kind]), artifact_path="report")
        if data is not None:
            client.log_dict(parent, data, "data.json")  # what `ablate data --json` says of the baseline's data
        if baseline is None:  # the variant runs carry the comparison with the study's own baseline
            log_variant_summaries(client, experiment_id, source.study, summary)
    return paths
