"""The early-stopping check: rank agreement of each epoch with the end, against scipy."""

import pandas as pd
import pytest
from scipy import stats

from ablate.results.early import early_stopping_note, rung_agreement


def _study(values: dict[str, list[float]], status: str = "completed") -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = pd.DataFrame([{"trial_id": t, "status": status, "epochs": len(v)} for t, v in values.items()])
    epochs = pd.DataFrame([{"trial_id": t, "epoch": e + 1, "mAP": x} for t, v in values.items() for e, x in enumerate(v)])
    return trials, epochs


def test_agreement_is_spearman_between_each_epoch_and_the_last():
    values = {"a": [0.1, 0.2, 0.30], "b": [0.2, 0.1, 0.35], "c": [0.3, 0.25, 0.20], "d": [0.4, 0.3, 0.25],
              "e": [0.05, 0.4, 0.5]}
    agreement = rung_agreement(*_study(values)).set_index("epoch")
    for epoch in (1, 2):
        expected = stats.spearmanr([v[epoch - 1] for v in values.values()], [v[2] for v in values.values()])
        assert agreement.loc[epoch, "rho"] == pytest.approx(expected.statistic) and agreement.loc[epoch, "n"] == 5


def test_a_reversed_early_ranking_is_said_not_to_predict_the_end():
    values = {t: [0.1 * i, 0.5 - 0.1 * i] for i, t in enumerate("abcd")}
    agreement = rung_agreement(*_study(values))
    assert agreement.loc[0, "rho"] == pytest.approx(-1.0)
    note = early_stopping_note(agreement, [1, 1])
    assert "epoch 1" in note and "rho = -1.00" in note and "did NOT predict the end" in note
    assert early_stopping_note(agreement, []) is None
    few = rung_agreement(*_study({t: values[t] for t in "ab"}))
    assert "too few" in early_stopping_note(few, [1])


def test_only_completed_trials_of_the_longest_schedule_count():
    trials, epochs = _study({t: [0.1 * i, 0.2 * i, 0.3 * i] for i, t in enumerate("abcd")})
    pruned, pruned_epochs = _study({"p": [0.9]}, status="pruned")
    agreement = rung_agreement(pd.concat([trials, pruned]), pd.concat([epochs, pruned_epochs]))
    assert agreement["n"].tolist() == [4, 4] and agreement["rho"].tolist() == pytest.approx([1.0, 1.0])
