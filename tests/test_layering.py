"""The import directions stay one way: the core (graph, genome, cost, budget, _shrink, build,
spaces, io, errors, viz) imports nothing from the layers above it, and only the CLI imports
the CLI. An `ast` walk over every module, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import archsearch

ROOT = Path(archsearch.__file__).parent
CORE = ("graph", "genome", "cost", "budget", "_shrink", "build", "spaces", "io", "errors", "viz")
ABOVE_CORE = ("cli", "train", "search", "pruners", "pipeline", "discover", "rethink",
              "unstructured", "presets")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, package: str) -> set[str]:
    """Every archsearch module `source` (in `package`) imports: absolute or relative, at
    module level or inside functions."""
    tree = ast.parse(source)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m == "archsearch" or m.startswith("archsearch.")}


def _modules() -> dict[str, set[str]]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        out[module] = _imports(path.read_text(encoding="utf-8"), package)
    return out


def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _violations(allowed: dict[str, set[str]] | None = None) -> list[str]:
    bad = []
    for module, imports in (allowed or _modules()).items():
        layer = _top(module)
        for target in sorted(imports):
            where = _top(target)
            if layer in CORE and (where in ABOVE_CORE or target.startswith("archsearch.models._")):
                bad.append(f"core {module} imports {target}")
            if where == "cli" and layer != "cli" and module != "archsearch.__main__":
                bad.append(f"{module} imports the CLI ({target})")
    return bad


def test_the_walk_sees_imports_inside_functions_and_relative_ones():
    source = ("import torch\n"
              "def f():\n    from archsearch.cli._common import console\n"
              "from . import discover\nfrom ..models import _cifar\n")
    assert _imports(source, "archsearch.train") == {
        "archsearch.cli._common", "archsearch.cli._common.console", "archsearch.train",
        "archsearch.train.discover", "archsearch.models", "archsearch.models._cifar"}
    tree = {"archsearch._shrink": {"archsearch.models._cifar"},
            "archsearch.train._loop": {"archsearch.cli._common"},
            "archsearch.build": {"archsearch.models", "archsearch.genome"}}
    assert _violations(tree) == [
        "core archsearch._shrink imports archsearch.models._cifar",
        "archsearch.train._loop imports the CLI (archsearch.cli._common)"]


def test_every_module_was_walked():
    modules = _modules()
    assert {"archsearch._shrink", "archsearch.build", "archsearch.train._loop",
            "archsearch.pipeline", "archsearch.cli.cmd_train"} <= set(modules)
    assert "archsearch.models._cifar" in modules["archsearch.models"]


def test_the_core_imports_only_the_core_and_only_the_cli_imports_the_cli():
    assert _violations() == []


def test_discover_and_rethink_do_not_import_each_other():
    modules = _modules()
    assert "archsearch.rethink" not in modules["archsearch.discover"]
    assert "archsearch.discover" not in modules["archsearch.rethink"]
