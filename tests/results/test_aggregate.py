"""variant_summary: seeds aggregated, deltas vs the baseline, checked against independent computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ablate.errors import DataError
from ablate.results.aggregate import factor_paths, load_frames, variant_summary
from ablate.results.stats import compare, pooled_sd, seeds_needed
from ablate.results.store import ResultsStore
from ablate.results.zoo import zoo_fields
from ablate.study.config import TrialConfig
from ablate.study.expand import config_dict

LEVELS = {0: "smooth_l1", 1: "giou", 2: "diou", 3: "ciou"}


def _trial(variant: int, seed: int, mAP: float | None, *, status: str = "completed", epochs: int = 3,
           reason: str = "", mem: float = 100.0, speed: float = 40.0, **extra) -> dict:
    """One trials.parquet row; the other APs are offsets of mAP so each column is distinct."""
    ap = {} if mAP is None else {"final_mAP": mAP, "final_AP50": mAP + 0.2, "final_APs": mAP - 0.1,
                                  "final_APm": mAP + 0.05, "final_APl": mAP + 0.1}
    return {"trial_id": f"t{variant}-{seed}", "study": "s", "variant": variant,
            "variant_name": "baseline" if variant == 0 else f"loss.box={LEVELS[variant]}", "seed": seed,
            "mlflow_run_id": f"run{variant}{seed}", "factor.loss.box": LEVELS[variant], "status": status,
            "reason": reason, "epochs": epochs, **ap, "peak_mem_mb": mem, "imgs_per_s": speed, **extra}


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


PAIRED = _frame([
    _trial(0, 0, 0.400, mem=100, speed=40), _trial(0, 1, 0.410, mem=102, speed=42),
    _trial(0, 2, 0.420, mem=101, speed=41),
    _trial(1, 0, 0.405, mem=110, speed=30), _trial(1, 1, 0.420, mem=111, speed=31),
    _trial(1, 2, 0.426, mem=109, speed=35),
])


def test_columns_are_exactly_the_documented_ones():
    s = variant_summary(PAIRED, factors=["loss.box"])
    assert list(s.columns) == [
        "variant", "variant_name", "factor.loss.box", "Network", "Dataset", "Backbone", "style", "Lr schd", "Mem",
        "mAP", "AP50", "APs", "APm", "APl", "at_epoch", "n_seeds", "seeds", "dmAP", "dmAP_lo", "dmAP_hi", "paired",
        "n_pairs", "p", "p_equiv", "verdict", "seeds_needed", "boot_lo", "boot_hi", "p_improve", "img/s", "img/s_lo",
        "img/s_hi", "epochs", "status", "mlflow_run_ids"]
    spread = s.attrs.pop("spread")
    assert s.attrs == {"metric": "mAP", "baseline": 0, "confidence": 0.95, "margin": 0.01, "correction": "holm",
                       "family": 1}
    assert spread == pytest.approx(np.std([0.005, 0.010, 0.006], ddof=1))


def test_means_and_paired_interval_equal_independent_pandas_and_scipy():
    s = variant_summary(PAIRED, factors=["loss.box"]).set_index("variant")
    by = PAIRED.groupby("variant")
    for col in ("mAP", "AP50", "APs", "APm", "APl"):
        assert s[col].to_numpy() == pytest.approx(by[f"final_{col}"].mean().to_numpy())
    assert s["Mem"].tolist() == by["peak_mem_mb"].max().tolist() == [102, 111]
    assert s["img/s"].tolist() == by["imgs_per_s"].median().tolist() == [41, 31]
    assert s["img/s_lo"].tolist() == by["imgs_per_s"].min().tolist() == [40, 30]
    assert s["img/s_hi"].tolist() == by["imgs_per_s"].max().tolist() == [42, 35]
    assert (s["img/s_lo"] < s["img/s_hi"]).all()  # the case has a range to check

    wide = PAIRED.pivot(index="seed", columns="variant", values="final_mAP")
    d = wide[1] - wide[0]  # [0.005, 0.010, 0.006]
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    row = s.loc[1]
    assert row["paired"] and row["n_seeds"] == 3 and row["seeds"] == [0, 1, 2]
    assert row["dmAP"] == pytest.approx(d.mean())
    assert (row["dmAP_lo"], row["dmAP_hi"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert row["p"] == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)  # one comparison: Holm changes nothing
    assert row["verdict"] == "better" and row["seeds_needed"] is None and row["n_pairs"] == 3
    assert row["p_improve"] == 1.0 and row["boot_lo"] <= row["dmAP"] <= row["boot_hi"]
    assert row["mlflow_run_ids"] == ["run10", "run11", "run12"]


def test_baseline_row_comes_first_with_zero_delta_and_no_interval():
    s = variant_summary(PAIRED.iloc[::-1], factors=["loss.box"])
    base = s.iloc[0]
    assert base["variant"] == 0 and base["dmAP"] == 0.0
    assert math.isnan(base["dmAP_lo"]) and math.isnan(base["dmAP_hi"])
    assert base["verdict"] is None and base["seeds_needed"] is None and not base["paired"]
    other = variant_summary(PAIRED, factors=["loss.box"], baseline=1)
    assert other["variant"].tolist() == [1, 0]
    assert other.iloc[1]["dmAP"] == pytest.approx(-s.iloc[1]["dmAP"])


def test_unpaired_welch_interval_when_the_seeds_differ():
    trials = _frame([_trial(0, s, m) for s, m in zip((0, 1, 2), (0.40, 0.41, 0.43))]
                    + [_trial(1, s, m) for s, m in zip((3, 4), (0.45, 0.46))])
    row = variant_summary(trials, factors=["loss.box"]).iloc[1]
    v, b = np.array([0.45, 0.46]), np.array([0.40, 0.41, 0.43])
    expected = stats.ttest_ind(v, b, equal_var=False).confidence_interval(0.95)
    assert not row["paired"]
    assert row["dmAP"] == pytest.approx(v.mean() - b.mean())
    assert (row["dmAP_lo"], row["dmAP_hi"]) == pytest.approx((expected.low, expected.high))


def test_one_seed_is_compared_with_the_same_seed_of_the_baseline_not_its_mean():
    # audit: the baseline's mean over seeds 0..2 is 0.45 and would flip the sign; seed 0's is 0.40
    trials = _frame([_trial(0, 0, 0.40), _trial(0, 1, 0.45), _trial(0, 2, 0.50), _trial(1, 0, 0.43)])
    row = variant_summary(trials, factors=["loss.box"]).iloc[1]
    assert row["dmAP"] == pytest.approx(0.03) and row["n_seeds"] == 1 and row["paired"]
    assert math.isnan(row["dmAP_lo"]) and math.isnan(row["dmAP_hi"])
    assert row["verdict"] == "unresolved"


def test_unresolved_delta_says_how_many_seeds_would_settle_it_at_80_percent_power():
    trials = _frame([_trial(0, 0, 0.40), _trial(0, 1, 0.41), _trial(1, 0, 0.41), _trial(1, 1, 0.41)])
    s = variant_summary(trials, factors=["loss.box"], margin=0.001)
    row = s.iloc[1]
    d = np.array([0.01, 0.0])
    assert row["verdict"] == "unresolved" and row["dmAP_lo"] < 0 < row["dmAP_hi"]
    assert row["seeds_needed"] == seeds_needed(d.mean(), d.std(ddof=1), margin=0.001, alpha=0.05, have=2)
    assert row["seeds_needed"] > 2


def test_seeds_needed_uses_the_spread_pooled_over_the_study_and_is_never_below_the_seeds_run():
    # audit: a Welch or 2-seed "seeds needed" could be fewer than the seeds already run
    base = [_trial(0, s, 0.40 + 0.01 * s) for s in range(4)]
    noisy = [_trial(1, s, 0.40 + 0.01 * s + d) for s, d in enumerate([0.02, -0.01, 0.015, -0.02])]
    calm = [_trial(2, s, 0.40 + 0.01 * s + d) for s, d in enumerate([0.001, 0.0, 0.002, -0.001])]
    s = variant_summary(_frame(base + noisy + calm), factors=["loss.box"]).set_index("variant")
    assert s.loc[1, "verdict"] == "unresolved" and s.loc[2, "verdict"] == "equivalent"
    b = {t["seed"]: t["final_mAP"] for t in base}
    spread = pooled_sd([compare({t["seed"]: t["final_mAP"] for t in rows}, b) for rows in (noisy, calm)])
    assert s.loc[1, "seeds_needed"] == seeds_needed(s.loc[1, "dmAP"], spread, margin=0.01, alpha=0.05 / 2, have=4)
    assert s.loc[1, "seeds_needed"] > 4


def test_pruned_and_failed_variants_keep_their_rows_and_status():
    trials = _frame([
        _trial(0, 0, 0.40), _trial(0, 1, 0.41),
        _trial(1, 0, 0.10, status="pruned", epochs=2), _trial(1, 1, 0.12, status="pruned", epochs=2),
        _trial(2, 0, None, status="failed", epochs=0, reason="OOM at batch_size 16", mem=math.nan, speed=math.nan),
        _trial(2, 1, None, status="failed", epochs=0, reason="OOM at batch_size 16", mem=math.nan, speed=math.nan),
        _trial(3, 0, 0.42), _trial(3, 1, 0.11, status="pruned", epochs=2),
        _trial(3, 2, 0.05, status="failed", epochs=1, reason="non-finite loss_box at epoch 2, iteration 7"),
    ])
    s = variant_summary(trials, factors=["loss.box"]).set_index("variant")
    assert s.loc[1, "status"] == "pruned@2" and s.loc[1, "epochs"] == 2
    assert math.isnan(s.loc[1, "mAP"])  # no epochs table given: no value at a common epoch to show
    failed = s.loc[2]
    assert failed["status"] == "failed: OOM at batch_size 16"
    assert math.isnan(failed["mAP"]) and math.isnan(failed["dmAP"]) and failed["n_seeds"] == 0
    assert failed["seeds"] == [] and failed["epochs"] == 0
    assert s.loc[3, "status"] == "completed 1, pruned@2 1, failed 1 (non-finite loss_box at epoch 2, iteration 7)"
    # audit: neither the pruned seed's epoch-2 value nor the failed seed's last one is a final result
    assert s.loc[3, "mAP"] == pytest.approx(0.42) and s.loc[3, "seeds"] == [0]


def _config(**keys) -> str:
    return json.dumps(config_dict(TrialConfig.model_validate(keys)), sort_keys=True)


def test_zoo_columns_read_like_model_zoos():
    coco = _config(model={"detector": "retinanet", "backbone": "resnet50"},
                   data={"dataset": "coco", "train_ann": "a.json", "val_ann": "b.json"},
                   train={"optimizer": {"name": "sgd", "lr": 0.02}, "batch_size": 2, "devices": 8,
                          "schedule": {"name": "step", "preset": "1x"}})
    assert zoo_fields(coco) == {"Network": "RetinaNet", "Dataset": "COCO", "Backbone": "R-50", "style": "pytorch",
                                "Lr schd": "0.02_1x"}
    tiny = _config(model={"detector": "fcos", "width": 0.5}, train={"epochs": 8, "schedule": "cosine",
                                                                    "batch_size": 4, "optimizer": {"lr": 0.016}})
    assert zoo_fields(tiny) == {"Network": "FCOS", "Dataset": "shapes", "Backbone": "tiny-w0.5", "style": "pytorch",
                                "Lr schd": "0.004_cosine_8e"}
    assert zoo_fields(_config(train={"epochs": 24}))["Lr schd"] == "0.005_2x"  # step, default milestones
    custom = _config(train={"epochs": 12, "schedule": {"name": "step", "milestones": [3, 6]}})
    assert zoo_fields(custom)["Lr schd"] == "0.005_step_12e"
    voc = _config(model={"backbone": "mobilenet_v3"}, data={"dataset": "voc", "train_ann": "a", "val_ann": "b"})
    assert (zoo_fields(voc)["Dataset"], zoo_fields(voc)["Backbone"]) == ("VOC", "MobileNetV3")
    voc0712 = _config(data={"dataset": "voc", "root": ["/d/VOCdevkit/VOC2007", "/d/VOCdevkit/VOC2012/"],
                            "train_split": "trainval", "val_split": "test"})
    assert zoo_fields(voc0712)["Dataset"] == "VOC07+12"
    named = {"crowns/data.yaml": "crowns", "sets/coco128.yaml": "coco128"}
    for yaml_path, name in named.items():  # a YOLO-format set is named as Ultralytics names it
        assert zoo_fields(_config(data={"dataset": "yolo", "yaml": yaml_path}))["Dataset"] == name
    folders = _config(data={"dataset": "yolo", "root": "/d/trees", "train_images": "images/train",
                            "val_images": "images/val", "classes": ["tree"]})
    assert zoo_fields(folders)["Dataset"] == "trees"
    planned = json.loads(coco)
    planned["train"]["lr_effective"] = 0.02  # `ablate plan --json` adds it
    assert zoo_fields(json.dumps(planned))["Lr schd"] == "0.02_1x"


@pytest.mark.parametrize(("keys", "network", "style"), [
    ({"model": {"detector": "atss", "backbone": "resnet101"}}, "ATSS", "pytorch"),
    ({"model": {"detector": "fcos", "backbone": "resnet50", "style": "caffe"}}, "FCOS", "caffe"),
    ({"model": {"detector": "fcos", "backbone": "resnet50", "style": "caffe"},
      "augment": ["hflip", {"name": "multiscale", "sizes": [640, 800]}]}, "FCOS_mstrain", "caffe"),
    ({"model": {"detector": "ssd", "backbone": "vgg16", "style": "caffe"}, "data": {"image_size": 300}}, "SSD300",
     "caffe"),
    ({"model": {"detector": "ssd", "backbone": "vgg16"}, "data": {"image_size": 512}}, "SSD512", "pytorch"),
    ({"model": {"detector": {"name": "ssd", "lite": True}, "backbone": "mobilenet_v3"}, "data": {"image_size": 320}},
     "SSDlite320", "pytorch"),
    ({"model": {"detector": "faster_rcnn"}}, "Faster R-CNN", "pytorch"),
    ({"model": {"detector": "detr"}}, "DETR", "pytorch"),
])
def test_network_and_style_read_as_the_zoo_writes_them(keys, network, style):
    fields = zoo_fields(_config(**keys))
    assert (fields["Network"], fields["style"]) == (network, style)


def test_a_store_from_before_detector_sections_still_names_the_network():
    old = json.loads(_config())
    old["model"]["detector"] = "fcos"  # written by a version where model.detector was a plain name
    assert zoo_fields(json.dumps(old))["Network"] == "FCOS"


def test_zoo_columns_come_from_the_config_column_or_are_empty():
    s = variant_summary(PAIRED, factors=["loss.box"])
    assert (s[["Network", "Dataset", "Backbone", "style", "Lr schd"]] == "").all().all()
    with_config = PAIRED.assign(config=_config(model={"backbone": "resnet18"}))
    row = variant_summary(with_config, factors=["loss.box"]).iloc[0]
    assert (row["Network"], row["Backbone"], row["Lr schd"]) == ("RetinaNet", "R-18", "0.005_1x")


def test_other_metric_and_confidence():
    s = variant_summary(PAIRED, factors=["loss.box"], metric="AP50", confidence=0.9)
    wide = PAIRED.pivot(index="seed", columns="variant", values="final_AP50")
    d = wide[1] - wide[0]
    half = stats.t.ppf(0.95, 2) * d.std(ddof=1) / math.sqrt(3)
    assert s.attrs["metric"] == "AP50"
    assert (s.iloc[1]["dmAP_lo"], s.iloc[1]["dmAP_hi"]) == pytest.approx((d.mean() - half, d.mean() + half))


def test_bad_inputs_say_what_would_work():
    with pytest.raises(DataError, match=r"baseline variant 7 has no trials; variants present: \[0, 1\]"):
        variant_summary(PAIRED, factors=["loss.box"], baseline=7)
    with pytest.raises(DataError, match="no factor column for loss.cls; the trials vary: loss.box"):
        variant_summary(PAIRED, factors=["loss.cls"])
    with pytest.raises(DataError, match="metric 'map'"):
        variant_summary(PAIRED, factors=["loss.box"], metric="map")


def test_factor_paths_in_column_order():
    frame = pd.DataFrame(columns=["variant", "factor.train.schedule", "seed", "factor.loss.box"])
    assert factor_paths(frame) == ["train.schedule", "loss.box"]


def test_load_frames_reads_the_store_and_names_a_missing_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        load_frames(tmp_path / "nope")
    store = ResultsStore(tmp_path / "s")
    store.add_epoch("a", {"epoch": 1, "mAP": 0.1})
    store.upsert_trial("a", variant=0, seed=0, status="completed")
    store.flush()
    trials, epochs = load_frames(tmp_path / "s")
    assert trials["final_mAP"].tolist() == [0.1] and epochs["epoch"].tolist() == [1]


def test_a_store_opened_and_flushed_again_writes_the_same_files_even_a_column_with_no_value(tmp_path):
    # a val set without large objects: APl (and ARl) is NaN in every epoch of every trial
    store = ResultsStore(tmp_path / "s")
    for tid, seed in (("a", 0), ("b", 1)):
        for epoch in (1, 2):
            store.add_epoch(tid, {"epoch": epoch, "mAP": 0.1 * epoch + seed, "APl": math.nan, "ARl": math.nan})
        store.upsert_trial(tid, variant=0, seed=seed, status="completed")
    store.flush()
    before = [pd.read_parquet(tmp_path / "s" / name) for name in ("trials.parquet", "epochs.parquet")]
    assert {"final_APl", "final_ARl"} <= set(before[0].columns) and before[0]["final_APl"].isna().all()
    again = ResultsStore(tmp_path / "s")  # a rerun of the finished study: it reads, then flushes
    again.upsert_trial("a", status="completed")
    again.flush()
    after = [pd.read_parquet(tmp_path / "s" / name) for name in ("trials.parquet", "epochs.parquet")]
    for b, a in zip(before, after):
        pd.testing.assert_frame_equal(a, b)
    again.add_epoch("c", {"epoch": 1, "mAP": 0.3})  # a new trial, new columns: added after the read ones
    again.upsert_trial("c", variant=1, seed=0, status="running", node="n1")
    again.flush()
    trials = pd.read_parquet(tmp_path / "s" / "trials.parquet")
    assert list(trials.columns) == [*before[0].columns, "node"] and trials["node"].tolist()[2] == "n1"


def test_a_variant_no_seed_completed_is_shown_and_compared_at_its_stop_epoch():
    trials = pd.DataFrame([
        {"trial_id": f"b{s}", "variant": 0, "variant_name": "baseline", "seed": s, "status": "completed",
         "epochs": 3, "final_mAP": 0.40 + s / 100} for s in (0, 1)] + [
        {"trial_id": f"p{s}", "variant": 1, "variant_name": "bad", "seed": s, "status": "pruned",
         "epochs": 1 + s, "final_mAP": 0.05 + s / 100 + 0.001 * s} for s in (0, 1)])
    epochs = pd.DataFrame([{"trial_id": f"b{s}", "epoch": e, "mAP": 0.02 * e + s / 100 + (0.38 if e == 3 else 0)}
                           for s in (0, 1) for e in (1, 2, 3)]
                          + [{"trial_id": f"p{s}", "epoch": e, "mAP": 0.01 * e + s / 100} for s in (0, 1)
                             for e in range(1, 2 + s)])
    for c in ("AP50", "APs", "APm", "APl"):
        epochs[c] = epochs["mAP"]
    row = variant_summary(trials, factors=[], epochs=epochs).set_index("variant_name").loc["bad"]
    # seed 0 stopped at epoch 1, seed 1 at 2: both are shown at epoch 1, never an average of epochs 1 and 2
    assert row["at_epoch"] == 1 and row["verdict"] == "stopped@1"
    assert row["mAP"] == pytest.approx(np.mean([0.01, 0.02]))
    diffs = [(0.01 + s / 100) - (0.02 + s / 100) for s in (0, 1)]  # against each seed's baseline at epoch 1
    assert row["dmAP"] == pytest.approx(np.mean(diffs))


def test_a_variant_the_race_stopped_is_worse_at_its_stop_epoch_with_the_races_p_whatever_completed():
    from ablate.results.race import Stop

    seeds = (0, 1, 2, 3)
    trials = pd.DataFrame(
        [{"trial_id": f"b{s}", "variant": 0, "variant_name": "baseline", "seed": s, "status": "completed",
          "epochs": 3, "final_mAP": 0.40 + s / 100} for s in seeds]
        # seeds 0 and 1 of the variant completed before seed 2 reached the look; seed 3 never started
        + [{"trial_id": f"v{s}", "variant": 1, "variant_name": "bad", "seed": s,
            "status": "completed" if s < 2 else "pruned", "epochs": (3, 3, 2, 0)[s],
            "final_mAP": 0.30 + s / 100 if s < 2 else None} for s in seeds])
    epochs = pd.DataFrame([{"trial_id": f"b{s}", "epoch": e, "mAP": 0.1 * e + s / 100} for s in seeds for e in (1, 2, 3)]
                          + [{"trial_id": f"v{s}", "epoch": e, "mAP": 0.05 * e + s / 100} for s in (0, 1, 2)
                             for e in (1, 2, 3) if not (s == 2 and e == 3)])
    for c in ("AP50", "APs", "APm", "APl"):
        epochs[c] = epochs["mAP"]
    stops = {1: Stop(1, 2, 3, -0.10, 0.004)}
    row = variant_summary(trials, factors=[], epochs=epochs, stops=stops).set_index("variant_name").loc["bad"]
    assert row["verdict"] == "worse" and row["p"] == 0.004 and row["at_epoch"] == 2
    assert row["mAP"] == pytest.approx(np.mean([0.10, 0.11, 0.12]))  # the three seeds at epoch 2, not the finals
    assert row["dmAP"] == pytest.approx(-0.10) and row["n_pairs"] == 3 and row["seeds"] == [0, 1, 2]
    plain = variant_summary(trials, factors=[], epochs=epochs).set_index("variant_name").loc["bad"]
    assert plain["at_epoch"] is None and plain["n_pairs"] == 2  # without the stop: the 2 completed seeds' finals


def test_a_failed_baseline_seed_leaves_the_pairing_on_the_other_seeds():
    # audit: one failed baseline seed turned a resolved paired comparison into an unresolved Welch one
    base = [_trial(0, s, m) for s, m in zip((0, 1, 2), (0.400, 0.430, 0.415))]
    base.append(_trial(0, 3, 0.05, status="failed", epochs=1, reason="OOM at batch_size 16"))
    variant = [_trial(1, s, m + d) for s, m, d in zip((0, 1, 2, 3), (0.400, 0.430, 0.415, 0.42),
                                                         (0.006, 0.0065, 0.0055, 0.006))]
    row = variant_summary(_frame(base + variant), factors=["loss.box"], margin=0.001).iloc[1]
    d = np.array([0.006, 0.0065, 0.0055])
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert row["paired"] and row["n_pairs"] == 3
    assert (row["dmAP_lo"], row["dmAP_hi"]) == pytest.approx((ci.low, ci.high))
    assert row["verdict"] == "better"


def test_a_failed_trials_last_epoch_is_not_its_final_value():
    # audit: a baseline seed that failed at epoch 1 (0.05) counted as final and made the variant look +0.128 better
    base = [_trial(0, 0, 0.40), _trial(0, 1, 0.41), _trial(0, 2, 0.05, status="failed", epochs=1, reason="hung")]
    variant = [_trial(1, s, 0.40 + 0.01 * s + 0.001) for s in range(3)]
    s = variant_summary(_frame(base + variant), factors=["loss.box"]).set_index("variant")
    assert s.loc[0, "mAP"] == pytest.approx(0.405) and s.loc[0, "seeds"] == [0, 1]
    assert s.loc[1, "dmAP"] == pytest.approx(0.001)


def test_a_shorter_variant_is_compared_with_the_baseline_final_not_at_its_own_last_epoch():
    # audit: a train.epochs 4 variant (0.381) read +0.18 against the 8-epoch baseline at epoch 4
    trials = _frame([_trial(0, s, 0.401 + 0.001 * s, epochs=8) for s in range(3)]
                    + [_trial(1, s, 0.381 + 0.001 * s, epochs=4) for s in range(3)])
    epochs = pd.DataFrame([{"trial_id": f"t0-{s}", "epoch": e, "mAP": 0.05 * e} for s in range(3) for e in range(1, 9)])
    row = variant_summary(trials, factors=["loss.box"], epochs=epochs).iloc[1]
    assert row["dmAP"] == pytest.approx(-0.020) and row["verdict"] == "worse"


def test_a_pruned_baseline_seed_is_not_used_as_final():
    # audit: with protect_baseline: false a pruned baseline seed (its epoch-2 value) was used as final
    base = [_trial(0, 0, 0.40), _trial(0, 1, 0.41), _trial(0, 2, 0.04, status="pruned", epochs=2)]
    variant = [_trial(1, s, 0.40 + 0.01 * s + 0.002) for s in range(3)]
    s = variant_summary(_frame(base + variant), factors=["loss.box"]).set_index("variant")
    assert s.loc[0, "seeds"] == [0, 1] and s.loc[1, "n_pairs"] == 2 and s.loc[1, "dmAP"] == pytest.approx(0.002)


def test_holm_across_the_studys_variants():
    base = [_trial(0, s, 0.40 + 0.01 * s) for s in range(3)]
    rows = list(base)
    for v, gain in ((1, [0.010, 0.020, 0.015]), (2, [0.001, 0.002, -0.001]), (3, [0.0, 0.001, 0.0])):
        rows += [_trial(v, s, 0.40 + 0.01 * s + g) for s, g in enumerate(gain)]
    s = variant_summary(_frame(rows), factors=["loss.box"], margin=0.001).set_index("variant")
    raw = [stats.ttest_1samp(np.array(g), 0.0).pvalue for g in ([0.010, 0.020, 0.015], [0.001, 0.002, -0.001],
                                                                 [0.0, 0.001, 0.0])]
    order = np.argsort(raw)
    holm = np.maximum.accumulate([min(1, (3 - i) * raw[j]) for i, j in enumerate(order)])
    expected = dict(zip(order + 1, holm))
    for v in (1, 2, 3):
        assert s.loc[v, "p"] == pytest.approx(expected[v])
    assert s.attrs["family"] == 3 and s.attrs["correction"] == "holm"


def test_a_report_while_the_baseline_has_no_completed_seed_yet_shows_no_delta():
    # a report written while a study runs: the variant completed, the baseline's trials are still running
    trials = _frame([_trial(0, 0, None, status="running", epochs=1), _trial(1, 0, 0.41), _trial(1, 1, 0.42)])
    row = variant_summary(trials, factors=["loss.box"]).set_index("variant").loc[1]
    assert math.isnan(row["dmAP"]) and row["verdict"] is None and row["mAP"] == pytest.approx(0.415)


def _cumulative(values: dict[int, list[float]]) -> pd.DataFrame:
    return _frame([_trial(v, s, x, design="cumulative") for v, xs in values.items() for s, x in enumerate(xs)])


def test_cumulative_steps_are_paired_against_the_row_above_and_corrected_together():
    from ablate.results.aggregate import step_summary

    values = {0: [0.40, 0.41, 0.42], 1: [0.43, 0.45, 0.46], 2: [0.431, 0.452, 0.459]}
    steps = step_summary(_cumulative(values), confidence=0.95, margin=0.01, correction="holm")
    assert list(steps["variant"]) == [1, 2] and list(steps["previous"]) == ["baseline", "loss.box=giou"]
    raw = []
    for prev, v in ((0, 1), (1, 2)):
        diffs = np.subtract(values[v], values[prev])
        row = steps[steps["variant"] == v].iloc[0]
        assert row["dmAP"] == pytest.approx(diffs.mean())
        lo, hi = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))
        assert (row["dmAP_lo"], row["dmAP_hi"]) == pytest.approx((lo, hi))
        raw.append(stats.ttest_1samp(diffs, 0.0).pvalue)
    # Holm over the two steps: the smaller p doubled, the larger kept (and never below the first)
    first, second = sorted(raw)
    holm = {raw.index(first): min(1, 2 * first), raw.index(second): min(1, max(2 * first, second))}
    assert list(steps["p"]) == pytest.approx([holm[0], holm[1]])
    assert steps.iloc[0]["verdict"] == "better"  # +0.037 mean, tight: a real step
    assert steps.iloc[1]["verdict"] != "better"  # +0.001: the second trick added nothing measurable


def test_step_summary_is_only_for_cumulative_studies():
    from ablate.results.aggregate import step_summary

    assert step_summary(PAIRED) is None
