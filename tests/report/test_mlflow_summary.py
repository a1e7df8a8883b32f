"""What a variant's MLflow run carries: the table's numbers under MLflow-legal names, the verdict as worded."""

from __future__ import annotations

import math

import pandas as pd

from ablate.report.mlflow_summary import variant_metrics, variant_tags


def _summary() -> pd.DataFrame:
    rows = [
        {"variant": 0, "variant_name": "baseline", "mAP": 0.38, "AP50": 0.56, "APs": 0.2, "APm": 0.5, "APl": 0.4,
         "n_seeds": 3, "seeds": [0, 1, 2], "dmAP": 0.0, "dmAP_lo": math.nan, "verdict": None, "seeds_needed": None,
         "at_epoch": None, "Mem": 30.7, "img/s": 30.3, "img/s_lo": 28.1,
         "img/s_hi": 32.6},
        {"variant": 1, "variant_name": "loss.box=l1", "mAP": 0.19, "AP50": 0.31, "APs": 0.09, "APm": 0.29,
         "APl": 0.19, "n_seeds": 3, "seeds": [0, 1, 2], "dmAP": -0.19, "dmAP_lo": -0.23, "dmAP_hi": -0.16,
         "p": 0.005, "verdict": "worse", "seeds_needed": None, "at_epoch": None, "p_improve": 0.0},
        {"variant": 2, "variant_name": "loss.box=diou", "mAP": 0.36, "n_seeds": 3, "seeds": [0, 2],
         "dmAP": -0.02, "verdict": "unresolved", "seeds_needed": 12, "at_epoch": None},
        {"variant": 3, "variant_name": "lr=0.8", "mAP": 0.04, "n_seeds": 2, "seeds": [], "verdict": "stopped@2",
         "at_epoch": 2},
    ]
    summary = pd.DataFrame(rows)
    summary.attrs.update(metric="mAP", baseline=0, margin=0.01, confidence=0.95, correction="holm", family=2)
    return summary


def test_numbers_keep_their_values_and_undefined_ones_are_left_out():
    s = _summary()
    base = variant_metrics(s.iloc[0], "mAP")
    assert base["mean_mAP"] == 0.38 and base["mem_mib"] == 30.7 and base["n_seeds"] == 3
    assert (base["imgs_per_s"], base["imgs_per_s_min"], base["imgs_per_s_max"]) == (30.3, 28.1, 32.6)
    assert "delta_mAP_lo" not in base and "p_value" not in base  # NaN / absent: not logged as a number
    l1 = variant_metrics(s.iloc[1], "mAP")
    assert (l1["delta_mAP"], l1["delta_mAP_lo"], l1["delta_mAP_hi"], l1["p_value"], l1["p_improvement"]) == (
        -0.19, -0.23, -0.16, 0.005, 0.0)
    assert variant_metrics(s.iloc[1], "AP50").keys() >= {"delta_AP50", "mean_mAP"}  # named for the judged metric


def test_tags_word_the_verdict_as_the_table_does():
    s = _summary()
    tags = [variant_tags(row, s) for _, row in s.iterrows()]
    assert [t["verdict"] for t in tags] == ["baseline", "worse", "unresolved (~12 seeds)", "stopped@2"]
    assert tags[2]["seeds"] == "0,2" and tags[3]["at_epoch"] == "2" and "at_epoch" not in tags[1]
    assert tags[1]["decision"] == "margin 0.01, confidence 0.95, holm over 2"
