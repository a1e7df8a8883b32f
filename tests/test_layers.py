"""The layers of ARCHITECTURE.md, enforced: no module imports from a layer above its own, the two
folders that share a layer (data, models) do not import each other, and loading a study imports
no torch, Ray or MLflow.  Imports inside functions count: a lazy import up the layers is still one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ablate"

# lowest first; a module may import its own layer or any below
LAYERS = [
    ("ground", {"ablate", "ablate.errors", "ablate.atomic", "ablate.metrics", "ablate.status", "ablate.mlflow_tags",
                "ablate.ray_env"}),
    ("tricks", {"ablate.tricks"}),
    ("study", {"ablate.study"}),
    ("data/models", {"ablate.data", "ablate.models"}),
    ("engine", {"ablate.engine"}),
    ("results", {"ablate.results"}),
    ("orchestrate", {"ablate.orchestrate"}),
    ("report", {"ablate.report"}),
    ("cli", {"ablate.cli", "ablate.__main__"}),
]
SHARED = {"data/models"}  # folders side by side: neither imports the other
MAX_LINES = 400  # STYLE.md: a file past ~400 lines usually holds two ideas


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _home(module: str) -> str:
    """The folder (or ground module) a module belongs to: ``ablate.study.schema`` -> ``ablate.study``."""
    for _, homes in LAYERS:
        for home in sorted(homes, key=len, reverse=True):
            if home != "ablate" and (module == home or module.startswith(home + ".")):
                return home
    if module == "ablate":
        return "ablate"
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it to LAYERS (and ARCHITECTURE.md)")


def _layer(module: str) -> int:
    home = _home(module)
    return next(i for i, (_, homes) in enumerate(LAYERS) if home in homes)


def _imports(path: Path) -> set[str]:
    """Every ablate module ``path`` imports, at the top or inside a function."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, or a name in base
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "ablate" or name.startswith("ablate.")}


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer():
    for path in FILES:
        _layer(_module(path))


def test_no_import_runs_up_the_layers_or_across_a_shared_layer():
    wrong = []
    for path in FILES:
        module = _module(path)
        for target in _imports(path):
            if _layer(target) > _layer(module):
                wrong.append(f"{module} imports {target} ({LAYERS[_layer(target)][0]} is above "
                             f"{LAYERS[_layer(module)][0]})")
            elif _layer(target) == _layer(module) and _home(target) != _home(module) and len(LAYERS[_layer(module)][1]) > 1 \
                    and LAYERS[_layer(module)][0] in SHARED:
                wrong.append(f"{module} imports {target}: {_home(module)} and {_home(target)} share a layer")
    assert not wrong, "\n".join(wrong)


def test_the_contract_can_fail():
    # the checker itself: a made-up upward import is caught
    assert _layer("ablate.report.build") > _layer("ablate.results.aggregate")
    assert _imports(PACKAGE / "orchestrate" / "run.py") >= {"ablate.orchestrate.tuner", "ablate.study"}


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_no_file_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


HEAVY = ("torch", "torchvision", "ray", "mlflow", "pycocotools", "faster_coco_eval", "scipy")


def _heavy_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=PACKAGE.parent)
    line = [line for line in done.stdout.splitlines() if line.startswith("heavy:")][-1]
    return [m for m in line.removeprefix("heavy:").split(",") if m]


def test_loading_a_study_imports_no_torch_ray_or_mlflow():
    code = ("from ablate.study import load_study, trials\nfrom ablate.study.expand import check\n"
            "from ablate.tricks import CATALOGUE\n"
            "s = load_study('studies/loss_ablation.yaml'); trials(s, check(s))")
    assert _heavy_after(code) == []


def test_ablate_plan_imports_no_torch_ray_or_mlflow():
    code = ("import contextlib, io, runpy\nsys.argv = ['ablate', 'plan', 'studies/loss_ablation.yaml']\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    runpy.run_module('ablate', run_name='__main__')")
    assert _heavy_after(code) == []



def test_a_trials_engine_imports_no_scipy_optimize_numba_or_scipy_stats():
    # each Ray worker process imports the engine before its first step: DETR's matcher (scipy.optimize, 0.3 s) and
    # box fusion (ensemble_boxes with numba, 0.25 s) are imported where they run, the statistics by the driver
    code = ("import sys\nfrom ablate.engine.trial import run_trial\nfrom ablate.data.build import build_data\n"
            "from ablate.models import build_model\nfrom ablate.orchestrate.worker import train\n"
            "print([m for m in ('scipy.optimize', 'numba', 'ensemble_boxes', 'scipy.stats') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert done.stdout.strip().splitlines()[-1] == "[]"
