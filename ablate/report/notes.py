"""The sentences under the report's table: how the verdicts were reached, what the unsettled ones need,
and how to read img/s."""

from __future__ import annotations

import math

import pandas as pd

from ablate.report.table import delta_header, is_baseline, known, rate_range, same_seeds

RATE_NOTE = ("img/s is the median trial's (the slowest–the fastest trial in brackets): trials run at different "
             "times on a shared machine, the baseline's first, so img/s is not ranked (never bold): a gap "
             "between variants can come from when their trials ran")


def notes(summary: pd.DataFrame) -> list[str]:
    """Plain sentences for the report: how the verdicts were reached, what the unsettled ones need, and how
    to read img/s."""
    lo, hi = rate_range(summary)
    return _verdict_notes(summary) + ([RATE_NOTE] if (lo.round(1) < hi.round(1)).any() else [])


def _verdict_notes(summary: pd.DataFrame) -> list[str]:
    header, baseline = delta_header(summary), is_baseline(summary)
    a = summary.attrs
    if (summary["n_seeds"] <= 1).all():
        return ["one seed per variant: no confidence intervals and no verdicts; add seeds to tell tricks from noise"]
    confidence, margin = a.get("confidence", 0.95), a.get("margin", 0.01)
    correction, family = a.get("correction", "holm"), a.get("family", 0)
    adjusted = {"holm": "Holm-adjusted", "bonferroni": "Bonferroni-adjusted", "none": "not adjusted"}[correction]
    if family:
        out = [f"verdicts at {confidence:.0%} confidence, {adjusted} across {family} variant(s): better/worse when "
               f"the paired t-test on the seeds both completed rejects no difference; equivalent when two one-sided "
               f"tests put {header} inside ±{margin:g}; the interval shown is the unadjusted t interval"]
    else:
        out = ["no verdict could be tested: no variant completed two or more of the baseline's seeds"]
    base_seeds = summary.loc[baseline, "seeds"].iloc[0] if "seeds" in summary else []
    for row, same, is_base in zip(summary.to_dict("records"), same_seeds(summary), baseline):
        if not same and not is_base and row["n_seeds"] and not known(row.get("at_epoch")):
            out.append(f"{row['variant_name']}: its AP columns (*) average seed(s) {row['seeds']}, the baseline's "
                       f"{list(base_seeds)}: they do not compare; {header} pairs the seeds both completed")
    for row, is_base in zip(summary.to_dict("records"), baseline):
        if is_base:
            continue
        name, mean, verdict = row["variant_name"], row["dmAP"], row.get("verdict")
        if mean is None or mean != mean:
            out.append(f"{name}: no {header[1:]} to compare ({row['status']})")
        elif verdict == "unresolved":
            need = row.get("seeds_needed")
            pairs = int(row.get("n_pairs", 0) or 0)
            spread = a.get("spread", math.nan)
            fix = (f"about {int(need)} seeds would settle it with 80% power at the study's spread" if known(need)
                   else "more than 1000 seeds would be needed at the study's spread" if known(spread)
                   else "too few paired seeds in the study to estimate its spread: add seeds")
            out.append(f"{name}: {header} {mean:+.3f} on {pairs} paired seed{'s' * (pairs != 1)} is unresolved; {fix}")
        elif verdict == "worse" and known(row.get("at_epoch")):  # the race's stop (results/race.py)
            out.append(f"{name}: stopped by the race at epoch {int(row['at_epoch'])}: worse than the baseline by more "
                       f"than the margin ({a.get('margin', 0):g}) there on its seeds paired with the baseline's "
                       f"(race-adjusted p {row['p']:.2g}, over every look and variant); its values and {header} "
                       "are at that epoch, not the end")
        elif isinstance(verdict, str) and verdict.startswith("stopped@"):
            out.append(f"{name}: stopped by the scheduler at epoch {verdict[8:]}; its values and {header} are at that "
                       "epoch, against the baseline's same seeds there (a scheduler's decision, not a test)")
    return out
