"""The package's layers: a lower layer never imports a higher one (lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import defdistill

PACKAGE = Path(defdistill.__file__).parent
BLOCKS = {"temperature", "inference", "io", "models", "checkpoint", "pretrained", "names", "devices"}
# what each layer may import besides itself
ALLOWED = {
    "blocks": {"blocks"},
    "defences": {"blocks"},  # defended models, at the level of the models
    "data": {"blocks"},
    "attacks": {"blocks"},
    "training": {"blocks", "defences", "data", "attacks"},
    "evaluation": {"blocks", "defences", "data", "attacks", "training"},
    "experiments": {"blocks", "defences", "data", "attacks", "training", "evaluation"},
    "cli": {"blocks", "defences", "data", "attacks", "training", "evaluation", "experiments"},
}


def layer_of(parts: list[str]) -> str:
    """The layer of ``defdistill.<parts>``: a folder, or ``blocks`` for a top-level module."""
    head = parts[0].removesuffix(".py")
    if head in BLOCKS or head == "__version__":
        return "blocks"
    if head not in ALLOWED:
        raise AssertionError(f"defdistill.{'.'.join(parts)}: not in any layer; add it to ALLOWED")
    return head


def imported_modules(tree: ast.AST) -> list[list[str]]:
    """``defdistill.*`` modules imported anywhere in ``tree``, as lists of name parts."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name.split(".")[1:] for a in node.names if a.name.startswith("defdistill.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "defdistill":
                continue
            if len(parts) > 1:
                found.append(parts[1:])
            else:  # from defdistill import x
                found += [[a.name] for a in node.names]
    return found


def layer_violations(package: Path) -> list[str]:
    """Every ``module -> imported module`` edge that goes up (or sideways) between layers."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).parts
        if rel == ("__init__.py",):  # the public API re-exports from every layer
            continue
        importer = layer_of(list(rel))
        for parts in imported_modules(ast.parse(path.read_text())):
            target = layer_of(parts)
            if target != importer and target not in ALLOWED[importer]:
                bad.append(f"{'/'.join(rel)} ({importer}) imports defdistill.{'.'.join(parts)} ({target})")
    return bad


def test_no_layer_imports_a_higher_one() -> None:
    assert layer_violations(PACKAGE) == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    (tmp_path / "attacks").mkdir()
    (tmp_path / "attacks" / "fgsm.py").write_text("def f():\n    from defdistill.evaluation import l2\n")
    (tmp_path / "models.py").write_text("import defdistill.cli.main\n")
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "loop.py").write_text("from defdistill import data, models\n")
    assert layer_violations(tmp_path) == [
        "attacks/fgsm.py (attacks) imports defdistill.evaluation (evaluation)",
        "models.py (blocks) imports defdistill.cli.main (cli)",
    ]
