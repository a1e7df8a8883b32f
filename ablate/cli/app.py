"""The ``ablate`` command line (typer + rich)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from ablate.cli.wording import (
    describe,
    err,
    out,
    print_metrics,
    print_plan,
    resolved,
    train_with_progress,
    write_report,
)
from ablate.errors import AblateError
from ablate.study import StudyError, expand, load_study, trials
from ablate.study.errors import Problem
from ablate.study.loader import require_env

app = typer.Typer(
    name="ablate",
    help="Which object-detection training tricks help on your data, by how much, and at what cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StudyFile = Annotated[Path, typer.Argument(help="study YAML file, e.g. studies/loss_ablation.yaml", show_default=False)]
Overrides = Annotated[
    list[str] | None,
    typer.Option("-o", "--override", help="dotted.key=value (the value is YAML), repeatable", show_default=False),
]
Debug = Annotated[bool, typer.Option("--debug", help="show the traceback of an error")]


@contextlib.contextmanager
def handled(debug: bool):
    """Turn known errors into a message and a non-zero exit; tracebacks only with --debug."""
    try:
        yield
    except StudyError as e:
        if debug:
            raise
        for problem in e.problems:
            err.print(f"[bold red]error[/] {escape(str(problem))}", highlight=False)
        err.print(f"{len(e.problems)} problem(s) in the study; nothing was started.", style="dim")
        raise typer.Exit(2) from None
    except AblateError as e:
        if debug:
            raise
        err.print(f"[bold red]error[/] {escape(_last_line(e))}", highlight=False)
        raise typer.Exit(e.exit_code) from None
    except typer.Exit:
        raise
    except Exception as e:
        if debug:
            raise
        err.print(f"[bold red]error[/] {escape(type(e).__name__ + ': ' + _last_line(e))}", highlight=False)
        err.print("rerun with --debug for the traceback", style="dim")
        raise typer.Exit(1) from None


def _last_line(e: Exception) -> str:
    """The message itself: torch re-raises a DataLoader worker's error with the worker's
    traceback in the message, and the user needs only its last line (the DataError)."""
    text = str(e).strip()
    if "Original Traceback" not in text:
        return text
    line = text.splitlines()[-1]  # "ablate.errors.DataError: cannot read image ..."
    prefix = f"{type(e).__module__}.{type(e).__qualname__}: "
    return line.removeprefix(prefix)


def _on_sigterm_finish_first() -> None:
    """SIGTERM (preemption) only sets a flag (terminate.py): the file or MLflow trial in progress is finished."""
    from ablate.orchestrate.terminate import TERM

    TERM.reset()
    TERM.install()


def _exit_if_terminated(what: str) -> None:
    from ablate.orchestrate.terminate import EXIT_CODE, TERM

    if TERM.requested:
        err.print(f"[yellow]terminated[/] (SIGTERM): {escape(what)}", highlight=False)
        raise typer.Exit(EXIT_CODE)


@app.command()
def run(
    file: StudyFile,
    override: Overrides = None,
    address: Annotated[str | None, typer.Option(help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)",
                                                show_default=False)] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="at most N trials at once (default: as resources allow)",
                                                       show_default=False)] = None,
    restart: Annotated[bool, typer.Option("--restart", help="discard this study's results and MLflow runs first")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would run, start nothing")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="show Ray's own console output")] = False,
    results: Annotated[Path, typer.Option(help="folder of the study results (results/<study>/)")] = Path("results"),
    storage: Annotated[str | None, typer.Option(help="trial checkpoints and Ray's state: a folder every node mounts, "
                                                     "s3://bucket/path or gs://bucket/path (default: the study's "
                                                     "storage key, else the results folder)", show_default=False)] = None,
    debug: Debug = False,
) -> None:
    """Run a study: every trial through Ray Tune (the paired race, ASHA or Optuna), logged to MLflow and results/<study>/.

    Running it again resumes: ended trials are kept, unfinished ones continue from their last epoch.
    """
    from ablate.orchestrate.run import run_study

    with handled(debug):
        try:
            outcome = run_study(file, override or [], results_root=results, storage=storage, address=address,
                                max_concurrent=max_concurrent, restart=restart, dry_run=dry_run, verbose=verbose,
                                console=err)
        except KeyboardInterrupt:  # Ctrl-C outside Tune (starting Ray, the report) or a second one
            if debug:
                raise
            err.print("[yellow]interrupted[/]: run the same command again to resume (finished trials are kept)")
            raise typer.Exit(130) from None
        page = write_report(outcome, err) if outcome.report_due and not dry_run else None
        if not dry_run:
            describe(outcome, page, err)
        if outcome.interrupted:
            _exit_if_terminated("the study stopped; run the same command again to resume")
        _exit_if_terminated("after the study's trials had ended" + ("; its report was written" if page else
                            f"; `ablate report {outcome.study}` writes its report"))
        if outcome.interrupted:
            raise typer.Exit(1)


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="study file (studies/x.yaml) or study name", show_default=False)],
    from_mlflow: Annotated[bool, typer.Option("--from-mlflow", help="read the tracking store, not results/")] = False,
    out: Annotated[Path | None, typer.Option(help="output folder (default: reports/<study>/)", show_default=False)] = None,
    baseline: Annotated[str | None, typer.Option(help="variant index or name the deltas are taken against "
                                                      "(default: the study's baseline, variant 0)",
                                                 show_default=False)] = None,
    percent: Annotated[bool, typer.Option("--percent", help="AP in percent instead of fractions")] = False,
    results: Annotated[Path, typer.Option(help="folder of the study results (results/<study>/)")] = Path("results"),
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI for a study given by name "
                                                          "(default: MLFLOW_TRACKING_URI or ./mlflow.db)",
                                                     show_default=False)] = None,
    debug: Debug = False,
) -> None:
    """Write the model-zoo table (table.md/.csv/.tex) and the HTML report of a study."""
    from ablate.report.build import Source, build_report

    _on_sigterm_finish_first()
    with handled(debug):
        if Path(study).is_file():
            s = load_study(Path(study), [])
            source = Source(s.name, s.description, results, tracking_uri or s.tracking.uri, s.tracking.experiment)
        else:
            source = Source(_study_name(study), results=results, tracking_uri=tracking_uri)
        paths = build_report(source, out_dir=out, from_mlflow=from_mlflow, baseline=baseline, percent=percent)
        print(paths["md"].read_text(), end="")
        err.print(f"report: {paths['html']} (tables: {', '.join(str(paths[k]) for k in ('md', 'csv', 'tex'))})")
        _exit_if_terminated("after the report was written")


@app.command()
def sync(
    study: Annotated[str, typer.Argument(help="study file (studies/x.yaml) or study name", show_default=False)],
    results: Annotated[Path, typer.Option(help="folder of the study results (results/<study>/)")] = Path("results"),
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: the one the run was "
                                                          "sending to)", show_default=False)] = None,
    debug: Debug = False,
) -> None:
    """Send to MLflow what a run recorded while MLflow was unreachable (results/<study>/mlflow_pending.json).

    Each trial's run is found again or created, missing epochs are logged, its ending set; nothing is sent twice.
    Exit code 1 if MLflow still cannot be reached.
    """
    from ablate.orchestrate.mlflow_mirror import sync_study

    _on_sigterm_finish_first()
    with handled(debug):
        name = load_study(Path(study), []).name if Path(study).is_file() else _study_name(study)
        _, left = sync_study(name, results=results, tracking_uri=tracking_uri,
                             note=lambda line: err.print(escape(line), highlight=False))
        _exit_if_terminated(f"{left} trial(s) still pending, kept; run `ablate sync {name}` again to send them")
        if left:
            raise typer.Exit(1)


@app.command()
def plan(
    file: StudyFile,
    override: Overrides = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the trials as JSON")] = False,
    debug: Debug = False,
) -> None:
    """Print the variants and trials a study will run, without running anything."""
    with handled(debug):
        study = load_study(file, override or [])
        variants = expand(study)
        all_trials = trials(study, variants)
        if as_json:
            rows = [
                {"trial_id": t.trial_id, "variant": t.variant.index, "variant_name": t.variant.name,
                 "seed": t.seed, "overrides": t.variant.overrides, "config": resolved(t.variant.config)}
                for t in all_trials
            ]
            print(json.dumps(rows, indent=2))
            return
        print_plan(study, variants, len(all_trials))


@app.command("show-config")
def show_config(
    file: StudyFile,
    variant: Annotated[int, typer.Option("--variant", "-v", help="variant number from `ablate plan` (0: baseline)")] = 0,
    override: Overrides = None,
    debug: Debug = False,
) -> None:
    """Print the fully resolved configuration of one variant as YAML."""
    with handled(debug):
        study = load_study(file, override or [])
        variants = expand(study)
        v = _variant(file, variants, variant)
        header = {k: v_ for k, v_ in study.model_dump(mode="json").items()
                  if k in ("name", "description", "design", "seeds")}
        text = yaml.safe_dump(header, sort_keys=False) + yaml.safe_dump(resolved(v.config), sort_keys=False)
        lines = [f"# variant {v.index}: {v.name}"] + [
            line + ("  # derived: lr x f(batch_size x devices x accumulate / base_batch_size)"
                    if line.startswith("  lr_effective:") else "")
            for line in text.splitlines()
        ]
        rest = study.model_dump(mode="json", include={"scheduler", "decision", "resources", "tracking", "max_failures",
                                                         "storage"})
        print("\n".join(lines) + "\n" + yaml.safe_dump(rest, sort_keys=False), end="")


def _variant(file, variants, index: int):
    """Variant ``index`` of the study, or an error that gives the valid range."""
    if not 0 <= index < len(variants):
        raise StudyError([_problem(file, "--variant", f"{index} is out of range; this study has variants "
                                   f"0..{len(variants) - 1} (see `ablate plan`)")])
    return variants[index]


def _problem(file, key, message) -> Problem:
    return Problem(str(file), key, message)


def _study_name(text: str) -> str:
    """A study named on the command line: it becomes results/<name>/ and reports/<name>/, so the
    same pattern as a study file's ``name`` (no '/', no '..')."""
    from ablate.study.schema import NAME_RE

    if not NAME_RE.fullmatch(text):
        raise StudyError([_problem(text, "", "no such study file, and not a study name: a name is lowercase "
                                   "letters, digits, '_' or '-', as the study file's `name:`")])
    return text


@app.command()
def train(
    file: StudyFile,
    variant: Annotated[int | None, typer.Option("--variant", "-v", help="variant number (0: baseline)")] = None,
    trial: Annotated[str | None, typer.Option("--trial", help="trial id from `ablate plan --json`")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="seed (default: the study's first)")] = None,
    override: Overrides = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="trial folder (default results/<study>/train/<id>)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="last line of stdout: the final metrics as JSON")] = False,
    debug: Debug = False,
) -> None:
    """Train one trial in this process (no Ray), with a progress bar; resumes from --out if interrupted."""
    from ablate.study.expand import trial_id

    with handled(debug):
        study = load_study(file, override or [])
        require_env(study)
        variants = expand(study)
        if trial is not None:
            if variant is not None:
                raise StudyError([_problem(file, "--trial", "give --trial or --variant, not both")])
            match = [t for t in trials(study, variants) if t.trial_id.startswith(trial)]
            if len(match) != 1:
                raise StudyError([_problem(file, "--trial", f"'{trial}' matches {len(match)} trials of this study "
                                           "(see `ablate plan --json`)")])
            v, seed = match[0].variant, match[0].seed if seed is None else seed
        else:
            v, seed = _variant(file, variants, variant or 0), study.seeds[0] if seed is None else seed
        tid = trial_id(v.config, seed)
        folder = out_dir or Path("results") / study.name / "train" / tid
        err.print(f"trial [bold]{tid}[/]: variant {v.index} ({escape(v.name)}), seed {seed} -> {escape(str(folder))}")
        result = train_with_progress(v.config, seed, folder)
        final = {"trial_id": tid, "variant": v.index, "variant_name": v.name, "seed": seed,
                 "status": result.status, **result.final}
        print_metrics(final)
        if as_json:
            print(json.dumps(final))


@app.command()
def data(
    target: Annotated[Path, typer.Argument(help="a study file (its baseline's data), an Ultralytics data.yaml, "
                                                "a COCO json or a VOCdevkit year folder", show_default=False)],
    override: Overrides = None,
    image_size: Annotated[int | None, typer.Option(help="the resize the sizes are counted after (default: the "
                                                        "study's data.image_size, else 192)", show_default=False)] = None,
    images: Annotated[Path | None, typer.Option(help="a COCO json's image folder (default: the json's own folder)",
                                                show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    debug: Debug = False,
) -> None:
    """What a dataset holds, before any training: images, boxes per class and per image, object sizes
    (COCO small / medium / large), image sizes, the repairs loading makes, duplicate files."""
    from ablate.cli.data_cmd import data_of, print_summary, summary_of

    with handled(debug):
        summary = summary_of(*data_of(target, override or [], image_size, images))
        if as_json:
            print(json.dumps(summary, indent=1))
        else:
            print_summary(summary)


@app.command()
def catalogue(
    kind: Annotated[str | None, typer.Argument(help="one kind, e.g. box_loss; all when omitted")] = None,
    debug: Debug = False,
) -> None:
    """List every trick a study can name, with its parameters and a one-line doc."""
    from ablate.errors import did_you_mean
    from ablate.tricks import CATALOGUE

    with handled(debug):
        if kind is not None and kind not in CATALOGUE:
            raise StudyError([_problem("catalogue", kind, f"unknown kind{did_you_mean(kind, CATALOGUE)}; "
                                       f"valid: {', '.join(CATALOGUE)}")])
        for name, k in CATALOGUE.items():
            if kind not in (None, name):
                continue
            table = Table(title=f"{name}: {k.doc} (study key: {k.key})", title_justify="left", show_lines=False)
            table.add_column("name", style="bold")
            table.add_column("parameters (default)")
            table.add_column("what it does")
            for trick_name, trick in k.table.items():
                params = "\n".join(
                    f"{p}={json.dumps(f.get_default(call_default_factory=True), default=str)}: {f.description}"
                    for p, f in trick.params.model_fields.items()
                )
                table.add_row(trick_name, escape(params) or "[dim]none[/]", escape(trick.doc))
            out.print(table)


def main() -> None:
    app(prog_name="ablate")


if __name__ == "__main__":
    sys.exit(main())
