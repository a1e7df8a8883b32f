"""The comparison table: column order, delta cells, best marks, and the three files."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from ablate.report.notes import RATE_NOTE, notes
from ablate.report.table import (
    ZOO_COLUMNS,
    best_cells,
    cross_table,
    format_delta,
    format_rate,
    tex_escape,
    write_tables,
    zoo_table,
)
from ablate.results.aggregate import variant_summary

HEADER = ("| Network | Dataset | Backbone | style | Lr schd | Mem | mAP | AP50 | APs | APm | APl | loss.box "
          "| ΔmAP | verdict | img/s | epochs | status |")
LEVELS = {0: "smooth_l1", 1: "giou", 2: "diou", 3: "ciou"}


def _trial(variant: int, seed: int, mAP: float | None, *, status: str = "completed", epochs: int = 3,
           reason: str = "", mem: float = 100.0, speed: float = 40.0) -> dict:
    ap = {} if mAP is None else {"final_mAP": mAP, "final_AP50": mAP + 0.2, "final_APs": mAP - 0.1,
                                  "final_APm": mAP + 0.05, "final_APl": mAP + 0.1}
    return {"trial_id": f"t{variant}-{seed}", "variant": variant,
            "variant_name": "baseline" if variant == 0 else f"loss.box={LEVELS[variant]}", "seed": seed,
            "mlflow_run_id": f"run{variant}{seed}", "factor.loss.box": LEVELS[variant], "status": status,
            "reason": reason, "epochs": epochs, **ap, "peak_mem_mb": mem, "imgs_per_s": speed}


def _summary(rows: list[dict]) -> pd.DataFrame:
    return variant_summary(pd.DataFrame(rows), factors=["loss.box"])


STUDY = _summary([
    _trial(0, 0, 0.400, mem=100.4, speed=40), _trial(0, 1, 0.410, mem=100.2, speed=41),
    _trial(1, 0, 0.405, mem=120.0, speed=30), _trial(1, 1, 0.420, mem=121.0, speed=31),  # unresolved
    _trial(2, 0, 0.450, mem=90.0, speed=50), _trial(2, 1, 0.462, mem=90.0, speed=50),  # resolved, best
    _trial(3, 0, 0.100, status="pruned", epochs=1, mem=80.0, speed=60),
    _trial(3, 1, None, status="failed", epochs=0, reason="OOM at batch_size 16", mem=math.nan, speed=math.nan),
])


def test_markdown_header_matches_the_column_order_exactly(tmp_path):
    paths = write_tables(STUDY, tmp_path)
    lines = paths["md"].read_text().splitlines()
    assert lines[0] == HEADER
    assert lines[1] == "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---|"
    assert len(lines) == 2 + len(STUDY)
    assert list(zoo_table(STUDY).columns) == [*ZOO_COLUMNS, "loss.box", "ΔmAP", "verdict", "img/s", "epochs",
                                            "status"]


def test_delta_cells_show_the_paired_interval_computed_independently():
    table = zoo_table(STUDY)
    d = pd.Series([0.405 - 0.400, 0.420 - 0.410])
    half = stats.t.ppf(0.975, 1) * d.std(ddof=1) / math.sqrt(2)
    lo, hi = d.mean() - half, d.mean() + half
    assert lo < 0 < hi
    assert table.loc[1, "ΔmAP"] == f"{d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"
    assert table.loc[1, "verdict"] == f"unresolved (~{STUDY.loc[1, 'seeds_needed']} seeds)"
    assert table.loc[0, "ΔmAP"] == "—" and table.loc[0, "verdict"] == "—"
    assert table.loc[2, "ΔmAP"].startswith("+0.051 [") and table.loc[2, "verdict"] == "better"


def test_format_delta_cases():
    row = {"dmAP": 0.005, "dmAP_lo": -0.010, "dmAP_hi": 0.020, "n_seeds": 3}
    assert format_delta(row) == "+0.005 [-0.010, +0.020]"
    assert format_delta(row, percent=True) == "+0.5 [-1.0, +2.0]"
    assert format_delta({**row, "dmAP_lo": 0.001}) == "+0.005 [+0.001, +0.020]"
    assert format_delta({**row, "dmAP_lo": math.nan, "dmAP_hi": math.nan, "n_seeds": 1}) == "+0.005 (1 seed)"
    assert format_delta({**row, "dmAP_lo": math.nan, "dmAP_hi": math.nan}) == "+0.005 (no interval)"
    assert format_delta(row, baseline=True) == "—"
    assert format_delta({**row, "dmAP": math.nan}) == "—"


def test_one_seed_study_shows_no_interval_and_says_so():
    one = _summary([_trial(0, 0, 0.40), _trial(1, 0, 0.43), _trial(2, 0, 0.39)])
    deltas = zoo_table(one)["ΔmAP"].tolist()
    assert deltas == ["—", "+0.030 (1 seed)", "-0.010 (1 seed)"]
    assert notes(one) == ["one seed per variant: no confidence intervals and no verdicts; add seeds to tell "
                          "tricks from noise"]
    assert zoo_table(one)["verdict"].tolist() == ["—", "unresolved", "unresolved"]


def test_notes_say_how_verdicts_are_reached_and_what_the_unsettled_need():
    need = STUDY.loc[1, "seeds_needed"]
    assert isinstance(need, int) and need > 2
    giou = STUDY.loc[1, "dmAP"]
    assert notes(STUDY) == [
        "verdicts at 95% confidence, Holm-adjusted across 2 variant(s): better/worse when the paired t-test on "
        "the seeds both completed rejects no difference; equivalent when two one-sided tests put ΔmAP inside "
        "±0.01; the interval shown is the unadjusted t interval",
        f"loss.box=giou: ΔmAP {giou:+.3f} on 2 paired seeds is unresolved; about {need} seeds would settle it with "
        "80% power at the study's spread",
        "loss.box=ciou: no mAP to compare (pruned@1 1, failed 1 (OOM at batch_size 16))",
        RATE_NOTE,
    ]


def test_a_variant_stopped_early_shows_its_values_at_the_stop_epoch():
    trials = pd.DataFrame([_trial(0, s, 0.40 + s / 100) for s in (0, 1)]
                          + [_trial(1, s, 0.05, status="pruned", epochs=2) for s in (0, 1)])
    epochs = pd.DataFrame([{"trial_id": f"t{v}-{s}", "epoch": e, **dict.fromkeys(
        ("mAP", "AP50", "APs", "APm", "APl"), 0.02 * e + 0.01 * v)} for v in (0, 1) for s in (0, 1) for e in (1, 2)])
    summary = variant_summary(trials, factors=["loss.box"], epochs=epochs)
    row = zoo_table(summary).loc[1]
    assert row["mAP"] == "0.050@2" and row["verdict"] == "stopped@2"
    assert not best_cells(summary).loc[1, "mAP"]  # a value at a stop epoch is not ranked against finals
    assert any(n.startswith("loss.box=giou: stopped by the scheduler at epoch 2") for n in notes(summary))


def test_a_variant_the_race_stopped_reads_worse_at_its_stop_epoch_and_the_notes_say_so():
    from ablate.results.race import Stop

    trials = pd.DataFrame([_trial(0, s, 0.40 + s / 100) for s in (0, 1, 2)]
                          + [_trial(1, s, 0.05, status="pruned", epochs=2) for s in (0, 1, 2)])
    epochs = pd.DataFrame([{"trial_id": f"t{v}-{s}", "epoch": e, **dict.fromkeys(
        ("mAP", "AP50", "APs", "APm", "APl"), 0.02 * e + 0.01 * v - 0.03 * v * (e == 2) + 0.001 * s)}
        for v in (0, 1) for s in (0, 1, 2) for e in (1, 2)])
    summary = variant_summary(trials, factors=["loss.box"], epochs=epochs, stops={1: Stop(1, 2, 3, -0.02, 0.004)})
    row = zoo_table(summary).loc[1]
    assert row["mAP"].endswith("@2") and row["verdict"] == "worse"
    assert not best_cells(summary).loc[1, "mAP"]
    said = [n for n in notes(summary) if n.startswith("loss.box=giou: stopped by the race at epoch 2")]
    assert said and "race-adjusted p 0.004" in said[0] and "not the end" in said[0], notes(summary)


def test_pruned_and_failed_variants_are_in_the_table_with_their_status():
    table = zoo_table(STUDY)
    assert table["loss.box"].tolist() == ["smooth_l1", "giou", "diou", "ciou"]
    assert table.loc[3, "status"] == "pruned@1 1, failed 1 (OOM at batch_size 16)"
    assert table.loc[3, "mAP"] == "—" and table.loc[3, "epochs"] == "1"  # no completed seed, no epochs to show
    all_failed = _summary([_trial(0, 0, 0.4), _trial(1, 0, None, status="failed", epochs=0, reason="OOM",
                                                       mem=math.nan, speed=math.nan)])
    row = zoo_table(all_failed).loc[1]
    assert (row["mAP"], row["Mem"], row["ΔmAP"], row["status"]) == ("—", "—", "—", "failed: OOM")
    two = _summary([_trial(0, 0, 0.4), _trial(0, 1, 0.41), _trial(1, 0, None, status="failed", epochs=0, reason="OOM")])
    assert notes(two)[1:] == ["loss.box=giou: no mAP to compare (failed: OOM)"]


def test_numbers_are_formatted_like_model_zoos():
    table = zoo_table(STUDY)
    assert table.loc[0, ["Mem", "mAP", "AP50", "APs", "img/s"]].tolist() == ["100", "0.405", "0.605", "0.305", "40.5 (40.0–41.0)"]
    percent = zoo_table(STUDY, percent=True)
    assert percent.loc[0, ["mAP", "AP50"]].tolist() == ["40.5", "60.5"]
    assert percent.loc[1, "ΔmAP"].startswith(f"{STUDY.loc[1, 'dmAP'] * 100:+.1f} [")


def test_best_cells_mark_max_ap_and_min_memory_and_ties():
    best = best_cells(STUDY)
    for column in ("mAP", "AP50", "APs", "APm", "APl"):
        assert best[column].tolist() == [False, False, True, False]
    assert best["Mem"].tolist() == [False, False, False, True]  # 80 MiB; the failed seed has no value
    assert not best["img/s"].any()  # never ranked: see the next test
    assert not best[["Network", "loss.box", "ΔmAP", "epochs", "status"]].any().any()
    tie = _summary([_trial(0, 0, 0.4, mem=100.2), _trial(1, 0, 0.4, mem=99.8)])
    assert best_cells(tie)["mAP"].tolist() == [True, True]
    assert best_cells(tie)["Mem"].tolist() == [True, True]  # both show 100


def test_img_s_shows_the_trials_range_and_is_never_bold():
    # the fresh-clone report this came from: the baseline's first pair of trials ran in a slow minute
    slow_start = _summary([_trial(0, 0, 0.40, speed=33.0), _trial(0, 1, 0.41, speed=40.0), _trial(0, 2, 0.42, speed=45.2),
                           _trial(1, 0, 0.40, speed=44.9), _trial(1, 1, 0.41, speed=46.9), _trial(1, 2, 0.42, speed=48.0)])
    assert zoo_table(slow_start)["img/s"].tolist() == ["40.0 (33.0–45.2)", "46.9 (44.9–48.0)"]
    assert not best_cells(slow_start)["img/s"].any()  # 44.9 < 45.2: the medians' gap is the machine's noise
    assert RATE_NOTE in notes(slow_start)
    apart = _summary([_trial(0, 0, 0.40, speed=33.0), _trial(0, 1, 0.41, speed=40.0), _trial(0, 2, 0.42, speed=45.2),
                      _trial(1, 0, 0.40, speed=45.3), _trial(1, 1, 0.41, speed=46.9), _trial(1, 2, 0.42, speed=48.0)])
    assert not best_cells(apart)["img/s"].any()  # apart, but maybe only because the baseline's trials ran first
    one_each = _summary([_trial(0, 0, 0.40, speed=40.0), _trial(1, 0, 0.43, speed=41.0)])
    assert zoo_table(one_each)["img/s"].tolist() == ["40.0", "41.0"] and RATE_NOTE not in notes(one_each)
    assert not best_cells(one_each)["img/s"].any()
    assert format_rate(40.04, 39.96, 40.04) == "40.0"  # a range that rounds to nothing is not shown
    assert format_rate(math.nan, math.nan, math.nan) == "—"


def test_writers_mark_best_cells_their_own_way(tmp_path):
    paths = write_tables(STUDY, tmp_path)
    md = paths["md"].read_text().splitlines()
    assert "| **0.456** |" in md[4] and "| **50.0** |" not in md[4]
    assert "| **80** |" in md[5] and "| 60.0 |" in md[5]  # img/s: never bold
    tex = paths["tex"].read_text()
    assert r"\textbf{0.456}" in tex and r"\textbf{80}" in tex


def test_latex_is_a_booktabs_tabular_with_escaped_text(tmp_path):
    tex = write_tables(STUDY, tmp_path)["tex"].read_text().splitlines()
    assert tex[0] == r"\begin{tabular}{lllllrrrrrrlrlrrl}"
    assert tex[1] == r"\toprule" and tex[3] == r"\midrule" and tex[-2:] == [r"\bottomrule", r"\end{tabular}"]
    assert tex[2].startswith(r"Network & Dataset & Backbone & style & Lr schd & Mem & mAP")
    assert r"loss.box & $\Delta$mAP & verdict & img/s" in tex[2]
    assert r"smooth\_l1" in tex[4] and "---" in tex[4]
    assert tex_escape("a_b & 50% #1 {x} $ ~ ^ \\") == (
        r"a\_b \& 50\% \#1 \{x\} \$ \textasciitilde{} \textasciicircum{} \textbackslash{}")
    assert tex_escape("40.0 (33.0–45.2)") == "40.0 (33.0--45.2)"  # the img/s range, as LaTeX writes an en dash


def test_csv_holds_plain_numbers_in_the_table_order(tmp_path):
    csv = pd.read_csv(write_tables(STUDY, tmp_path, percent=True)["csv"])
    assert list(csv.columns) == [*ZOO_COLUMNS, "at_epoch", "loss.box", "dmAP", "dmAP_lo", "dmAP_hi", "p", "p_equiv",
                                 "verdict", "seeds_needed", "boot_lo", "boot_hi", "p_improve", "img/s", "img/s_lo",
                                 "img/s_hi", "epochs", "status"]
    for column in ("Mem", "mAP", "AP50", "dmAP", "dmAP_lo", "dmAP_hi", "img/s", "img/s_lo", "img/s_hi"):
        assert csv[column].to_numpy() == pytest.approx(STUDY[column].to_numpy(dtype=float), nan_ok=True)
    assert csv["status"].tolist() == STUDY["status"].tolist()


def test_write_tables_leaves_no_temporary_files(tmp_path):
    out = tmp_path / "reports" / "s"
    paths = write_tables(STUDY, out)
    assert set(paths) == {"md", "csv", "tex"}
    assert sorted(p.name for p in out.iterdir()) == ["table.csv", "table.md", "table.tex"]


def test_a_mean_over_other_seeds_than_the_baselines_is_marked_and_not_ranked():
    # make run's case: diou completed seed 0 only (0.409) against the baseline's mean of seeds 0 and 1 (0.388);
    # ranking 0.409 above 0.388 would compare one lucky seed with two; the delta pairs seed 0 alone
    one = _summary([_trial(0, 0, 0.404), _trial(0, 1, 0.372), _trial(1, 0, 0.409),
                    _trial(1, 1, 0.05, status="pruned", epochs=2)])
    table, best = zoo_table(one), best_cells(one)
    assert table.loc[1, "mAP"] == "0.409*" and table.loc[0, "mAP"] == "0.388"
    assert not best.loc[1, "mAP"] and not best.loc[0, "mAP"]  # one comparable value: nothing to mark
    assert table.loc[1, "ΔmAP"] == "+0.005 (1 seed)"
    assert notes(one) == [
        "no verdict could be tested: no variant completed two or more of the baseline's seeds",
        "loss.box=giou: its AP columns (*) average seed(s) [0], the baseline's [0, 1]: they do not compare; "
        "ΔmAP pairs the seeds both completed",
        "loss.box=giou: ΔmAP +0.005 on 1 paired seed is unresolved; too few paired seeds in the study to estimate "
        "its spread: add seeds",
    ]


def test_markdown_escapes_the_seed_mark(tmp_path):
    one = _summary([_trial(0, 0, 0.404), _trial(0, 1, 0.372), _trial(1, 0, 0.409)])
    assert r"| 0.409\* |" in write_tables(one, tmp_path)["md"].read_text()


def _cell(variant: int, seed: int, detector: str, assigner: str, mAP: float) -> dict:
    return {"trial_id": f"t{variant}-{seed}", "variant": variant, "variant_name": f"v{variant}", "seed": seed,
            "factor.model.detector": detector, "factor.model.assigner": assigner, "status": "completed",
            "epochs": 3, "final_mAP": mAP, "peak_mem_mb": 10.0, "imgs_per_s": 5.0}


def test_a_two_factor_grid_gets_a_cross_table_in_the_markdown(tmp_path):
    rows = [_cell(v, s, d, a, m + 0.01 * s) for v, (d, a, m) in enumerate(
        [("retinanet", "max_iou", 0.30), ("retinanet", "atss", 0.35), ("atss", "max_iou", 0.31), ("atss", "atss", 0.36)])
        for s in (0, 1)]
    summary = variant_summary(pd.DataFrame(rows), factors=["model.detector", "model.assigner"])
    cross = cross_table(summary)
    assert list(cross.columns) == ["model.detector \\ model.assigner", "max_iou", "atss"]
    assert cross.to_numpy().tolist() == [["retinanet", "0.305", "0.355"], ["atss", "0.315", "0.365"]]
    md = write_tables(summary, tmp_path)["md"].read_text()
    assert md.splitlines()[-4:] == ["| model.detector \\ model.assigner | max_iou | atss |", "|---|---|---|",
                                    "| retinanet | 0.305 | 0.355 |", "| atss | 0.315 | 0.365 |"]
    assert cross_table(STUDY) is None  # one factor: no cross table
    one_at_a_time = variant_summary(pd.DataFrame([r for r in rows if r["variant"] != 3]),
                                    factors=["model.detector", "model.assigner"])
    assert cross_table(one_at_a_time) is None  # no variant moves both: an L, not a grid


def test_a_cumulative_study_lists_each_step_against_the_row_above(tmp_path):
    from ablate.results.aggregate import step_summary

    rows = [dict(_trial(v, s, x), design="cumulative") for v, xs in
            {0: [0.40, 0.41, 0.42], 1: [0.43, 0.45, 0.46], 2: [0.431, 0.452, 0.459]}.items() for s, x in enumerate(xs)]
    trials = pd.DataFrame(rows)
    steps = step_summary(trials)
    text = write_tables(variant_summary(trials, factors=["loss.box"]), tmp_path, steps=steps)["md"].read_text()
    step_lines = [line for line in text.splitlines() if "→" in line]
    assert [line.split("|")[1].strip() for line in step_lines] == ["baseline → loss.box=giou",
                                                                 "loss.box=giou → loss.box=diou"]
    assert step_lines[0].split("|")[3].strip().startswith("+0.037 [")  # the step's own delta, not the baseline's
    assert step_lines[1].split("|")[3].strip().startswith("+0.001 [")
