"""What a study file (or a study's strings) must never be able to do.

- build Python objects while loading (safe YAML only);
- name a folder outside ``results/`` or ``reports/``;
- reach a shell: ablate starts no process at all;
- make a server listen beyond loopback without a stated reason.

The report's escaping is tests/report/test_report_escaping.py; malformed files are
tests/bad_inputs/.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.study import StudyError, load_study
from ablate.study.loader import StudyLoader

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system [\"touch {marker}\"]",
    "!!python/object/apply:subprocess.check_call [[touch, {marker}]]",
    "!!python/object/new:subprocess.Popen [[touch, {marker}]]",
    "!!python/name:os.system",
    "!!python/module:os",
])
def test_study_yaml_builds_no_object(tag, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ndescription: {tag.format(marker=marker)}\n")
    with pytest.raises(StudyError, match="YAML tags that build objects are not allowed"):
        load_study(path)
    assert not marker.exists()
    assert issubclass(StudyLoader, yaml.constructor.SafeConstructor)
    assert not issubclass(StudyLoader, (yaml.constructor.FullConstructor, yaml.constructor.UnsafeConstructor))


@pytest.mark.parametrize("name", ["../x", "../../etc", "a/b", "/tmp/x", "..", ".", "a\\b", "~root", "x y", "x\ny",
                                  "café", "NUL\x00", "x.yaml", ""])
def test_a_study_name_cannot_be_a_path(name, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": name}))
    with pytest.raises(StudyError) as e:
        load_study(path)
    assert [p.key for p in e.value.problems] == ["name"]


@pytest.mark.parametrize("command", ["report", "sync"])
@pytest.mark.parametrize("name", ["../../x", "a/b", "/tmp/x"])
def test_a_study_given_by_name_cannot_leave_its_folders(command, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [command, name, "--results", str(tmp_path / "results")])
    assert result.exit_code == 2 and "not a study name" in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_nothing_reaches_a_shell_or_runs_code_from_a_string():
    """No module of ablate starts a process or evaluates a string: a study's strings are only data.

    (The tests do start processes: `ablate` itself as a subprocess, mlflow server, PostgreSQL,
    all with argument lists and no shell, and none with a study's strings.)
    """
    found = []
    for path in sorted((REPO / "ablate").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("subprocess", "pty", "pickle", "marshal", "shelve") for n in names):
                    found.append(f"{where}: imports {names}")
            elif isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f"{getattr(f.value, 'id', '?')}.{f.attr}" \
                    if isinstance(f, ast.Attribute) else "?"
                if name in ("eval", "exec", "compile", "__import__", "os.system", "os.popen", "os.execv",
                            "os.execvp", "os.spawnv", "os.posix_spawn", "importlib.import_module"):
                    found.append(f"{where}: calls {name}")
                if any(k.arg == "shell" for k in node.keywords):
                    found.append(f"{where}: shell=")
    assert found == []


# --host 0.0.0.0, --dashboard-host=0.0.0.0, ["--host", "0.0.0.0"], host="0.0.0.0", ...
SERVER_FLAG = re.compile(r"(--host|--dashboard-host|--node-ip-address|\bhost)\W{0,4}0\.0\.0\.0")


def test_servers_listen_on_loopback_unless_a_comment_says_why():
    """Every `mlflow server/ui`, `ray start` and test server in the docs, cluster files and tests
    listens on 127.0.0.1, or on 0.0.0.0 under a comment saying why (the cluster's MLflow server,
    which the worker nodes reach)."""
    files = [REPO / "README.md", REPO / "Makefile", *REPO.glob("docs/*.md"), *REPO.glob("ray_cluster*.yaml"),
             *REPO.glob("ablate/**/*.py"), *REPO.glob("bench/*.py"), *REPO.glob("tests/**/*.py")]
    skip = {REPO / "tests" / "test_cluster_config.py", Path(__file__).resolve()}  # they assert the flag itself
    unexplained, explained = [], 0
    for path in files:
        if path in skip or not path.is_file():
            continue
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if SERVER_FLAG.search(line):
                if any("Why 0.0.0.0" in above for above in lines[max(0, i - 25):i]):
                    explained += 1
                else:
                    unexplained.append(f"{path.relative_to(REPO)}:{i + 1}: {line.strip()}")
    assert unexplained == []
    assert explained == 2  # the MLflow server of ray_cluster.yaml and of ray_cluster.local.yaml
    for path in REPO.glob("ray_cluster*.yaml"):
        assert "--dashboard-host=127.0.0.1" in path.read_text()  # Ray's job API runs any code it is sent
