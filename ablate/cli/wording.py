"""What ``ablate`` prints: the plan table, the run's summary, a trial's progress, the resolved config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ablate.study.expand import config_dict, level_of, max_t, rungs, short

if TYPE_CHECKING:
    from ablate.orchestrate.run import Outcome

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def level_label(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        return escape(str(value["name"]))
    return escape(short(value))


def print_plan(study, variants, n_trials: int) -> None:
    factors = list(study.factors)
    table = Table(title=f"{study.name}: {study.design}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("variant", overflow="fold")
    for path in factors:
        table.add_column(escape(path), overflow="fold")
    for v in variants:
        cells = []
        for path in factors:
            if path in v.overrides:
                cells.append(level_label(v.overrides[path]))
            else:  # the baseline's value (a bundle: the label of the level that is the baseline)
                cells.append(f"[dim]{level_label(level_of(study, v, path) or '—')}[/]")
        name = "[bold]baseline[/] ◀" if v.is_baseline else escape(v.name)
        table.add_row(str(v.index), name, *cells)
    out.print(table)
    epochs = sum(v.config.train.epochs for v in variants) * len(study.seeds)
    s = study.scheduler
    horizon = max_t(study, variants)
    if s.name == "asha":
        pruning = (f"ASHA on {s.metric} ({s.mode}), grace {s.grace_period}, reduction {s.reduction_factor:g}, "
                   f"max_t {horizon}" + (", paired by seed" if s.pairing == "seed" else ""))
    elif s.name == "race":
        at = rungs(s.grace_period, s.reduction_factor, horizon)
        pruning = (f"paired race on {s.metric} against the baseline's same seeds at epoch(s) "
                   f"{', '.join(map(str, at)) or 'none'}, from {s.min_seeds} seeds, margin {study.decision.margin:g}")
        if len(study.seeds) < s.min_seeds and not (study.decision.max_seeds or 0) >= s.min_seeds:
            pruning += f" (with {plural(len(study.seeds), 'seed')} it never judges: every trial runs to the end)"
    else:
        pruning = "no early stopping"
    if study.decision.max_seeds:
        pruning += f"; up to {study.decision.max_seeds} seeds where a verdict stays open"
    out.print(f"{plural(len(variants), 'variant')} x {plural(len(study.seeds), 'seed')} = [bold]{plural(n_trials, 'trial')}[/], "
              f"at most {epochs} epochs; {pruning}")
    if study.design == "optuna":
        space = Table(title="search space (sampled by Optuna at run time)", title_justify="left")
        space.add_column("path")
        space.add_column("distribution")
        for path, d in study.search.space.items():
            space.add_row(escape(path), escape(short({"name": d.type} | d.model_dump(exclude={"type"}, exclude_none=True))))
        out.print(space)
        out.print(f"+ {plural(study.search.num_samples, 'sampled configuration')} x {plural(len(study.seeds), 'seed')} "
                  f"(sampler seed {study.search.seed})")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def resolved(config) -> dict:
    """The config as shown to users: ``name`` first in each section, lr_effective added."""

    def name_first(value: Any) -> Any:
        if isinstance(value, dict):
            keys = sorted(value, key=lambda k: k != "name")
            return {k: name_first(value[k]) for k in keys}
        if isinstance(value, list):
            return [name_first(v) for v in value]
        return value

    data = name_first(config_dict(config))
    train = data["train"]
    at = list(train).index("lr_scaling") + 1
    items = list(train.items())
    data["train"] = dict(items[:at] + [("lr_effective", config.lr_effective)] + items[at:])
    return data


def train_with_progress(config, seed: int, folder: Path):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ablate.engine.trial import run_trial
    from ablate.errors import TrialFailed

    epochs = config.train.epochs
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("it {task.fields[it]}"),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(f"epoch 1/{epochs}", total=None, it="-", loss=float("nan"))

        def on_iteration(p: dict) -> None:
            done = (p["epoch"] - 1) * p["iterations"] + p["iteration"]
            bar.update(task, total=epochs * p["iterations"], completed=done, it=f"{p['iteration']}/{p['iterations']}",
                       loss=p["loss"], description=f"epoch {p['epoch']}/{epochs}")

        def on_epoch(row: dict, _folder) -> None:
            bar.console.print(f"epoch {row['epoch']:>3}: mAP {row['mAP']:.3f}  AP50 {row['AP50']:.3f}  "
                              f"loss {row['loss']:.3f}  {row['imgs_per_s']:.1f} img/s  {row['epoch_time_s']:.1f} s")

        try:
            return run_trial(config, seed=seed, out_dir=folder, progress=on_iteration, on_epoch=on_epoch,
                             log=lambda message: bar.console.print(escape(message)))
        except TrialFailed as e:
            bar.console.print(f"[bold red]trial failed[/] {escape(e.reason)} (recorded in {folder}/status.json)")
            raise typer.Exit(1) from None


def print_metrics(final: dict) -> None:
    table = Table(title="final metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in final.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else escape(str(value)))
    err.print(table)


def write_report(outcome: Outcome, console: Console) -> Path | None:
    """The report of a study that ran to its end, rebuilt from what is recorded; a failure here loses nothing."""
    from ablate.report.build import Source, build_report

    try:
        paths = build_report(Source(outcome.study, outcome.description, outcome.folder.parent, outcome.tracking_uri,
                                    outcome.experiment))
    except Exception as e:  # noqa: BLE001 -- the results are safe in results/<study>/; say so and go on
        console.print(f"[yellow]note[/] the report could not be written ({type(e).__name__}: {escape(str(e))}); "
                      f"the results are in {outcome.folder}; retry with: ablate report {outcome.study}")
        return None
    return paths["html"]


def describe(outcome: Outcome, report: Path | None, console: Console) -> None:
    """Where the results are, after a run."""
    c = outcome.counts
    console.print(f"[bold]{escape(outcome.study)}[/]: {c.get('completed', 0)} completed, {c.get('pruned', 0)} pruned, "
                  f"{c.get('failed', 0)} failed of {outcome.planned} planned", highlight=False)
    if outcome.interrupted:
        console.print("[yellow]not finished[/]: run the same command again to resume (finished trials are kept)")
    console.print(f"results: {outcome.folder}/trials.parquet, {outcome.folder}/epochs.parquet")
    if outcome.storage and outcome.storage != str(outcome.folder.resolve()):
        console.print(f"trial folders (checkpoints): {outcome.storage}/trials/")
    if report is not None:
        console.print(f"report: {report} and {report.parent}/table.md")
    if outcome.tracking_uri:
        here = outcome.tracking_uri == f"sqlite:///{Path.cwd() / 'mlflow.db'}"  # MLflow's default, `mlflow ui`'s too
        browse = "mlflow ui" if here else f"mlflow ui --backend-store-uri {outcome.tracking_uri}"
        console.print(f"MLflow: {outcome.tracking_uri} -- browse it with: {browse}")
    if outcome.unsynced:
        console.print(f"[yellow]not synced[/]: MLflow did not get {outcome.unsynced} trial(s) (unreachable); they are "
                      f"kept in {outcome.folder}/ and sent by `ablate sync {outcome.study}"
                      + ("" if outcome.folder.parent == Path("results") else f" --results {outcome.folder.parent}")
                      + "` or the next `ablate run` of the study", highlight=False)
