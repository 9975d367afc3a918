"""House rules measured, not hoped for: rooms that fit, and one door to MLflow."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "finpulse"
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
    return len([n for n in names if n not in ("self", "cls")])


def test_modules_stay_under_the_line_limit() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: split them along their seams"


def test_functions_stay_short_and_take_few_parameters() -> None:
    too_long, too_wide = {}, {}
    for path in _modules():
        for fn in _functions(ast.parse(path.read_text())):
            where = f"{path.relative_to(PACKAGE)}:{fn.name}"
            if (n := fn.end_lineno - fn.lineno + 1) > MAX_FUNCTION_LINES:
                too_long[where] = n
            # typer commands are the exception: each option is a parameter by design
            if path.relative_to(PACKAGE).parts[0] != "cli" and (k := _parameters(fn)) > MAX_PARAMETERS:
                too_wide[where] = k
    assert too_long == {}, f"functions over {MAX_FUNCTION_LINES} lines"
    assert too_wide == {}, f"functions over {MAX_PARAMETERS} parameters: take an options object"


def test_only_tracking_imports_mlflow() -> None:
    importers = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                importers.add(str(path.relative_to(PACKAGE)))
    # the door is the package finpulse/tracking/ (runs, client, registry); nothing outside it imports MLflow
    assert importers and {p.split("/")[0] for p in importers} == {"tracking"}, importers
