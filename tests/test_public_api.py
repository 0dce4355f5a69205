"""The public API is the concepts: `archsearch` exports the core ones, and each
subpackage's `__all__` lists its concepts while helpers stay in their private modules."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import archsearch

CORE = {"Space": "spaces", "load_space": "spaces", "bind": "build", "Genome": "genome",
        "parse_budget": "budget", "fit_to_budget": "budget", "shrink": "_shrink",
        "Cost": "cost", "genome_cost": "build"}
HELPERS = {"archsearch.search": {"tally": "_storage", "trial_row": "_results",
                                 "check_subset": "_evaluate", "kendall_tau": "_plots",
                                 "open_storage": "_storage", "stage_ratios": "_space"},
           "archsearch.train": {"resolve_device": "_device", "cpu_has_fast_bf16": "_device",
                                "DEFAULT_LR": "_config"}}


@pytest.mark.parametrize("name", sorted(CORE))
def test_the_core_concepts_come_from_the_top_package(name):
    module = importlib.import_module(f"archsearch.{CORE[name]}")
    assert name in archsearch.__all__
    assert getattr(archsearch, name) is getattr(module, name)


@pytest.mark.parametrize("package", ["archsearch", "archsearch.search", "archsearch.train"])
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    assert len(module.__all__) == len(set(module.__all__))
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing


@pytest.mark.parametrize("package", sorted(HELPERS))
def test_helpers_are_not_exported_but_live_in_their_modules(package):
    exported = set(importlib.import_module(package).__all__)
    for name, private in HELPERS[package].items():
        assert name not in exported, name
        assert hasattr(importlib.import_module(f"{package}.{private}"), name), name


@pytest.mark.parametrize("first", ["import archsearch._shrink", "from archsearch import shrink",
                                   "from archsearch import bind; bind('resnet20', 'synthetic')"])
def test_shrink_stays_the_function_whichever_import_comes_first(first):
    """The function `shrink` lives in the private module `archsearch._shrink`, so no import
    order can rebind `archsearch.shrink` to a module, and the package is a plain module (no
    import-time class swap). A fresh interpreter per order."""
    code = (f"{first}\n"
            "import archsearch, sys, types\n"
            "from archsearch import shrink\n"
            "from archsearch._shrink import channel_indices\n"
            "assert shrink is archsearch.shrink is sys.modules['archsearch._shrink'].shrink\n"
            "assert type(sys.modules['archsearch']) is types.ModuleType\n"
            "assert 'archsearch.shrink' not in sys.modules\n"
            "assert callable(shrink) and callable(channel_indices)\n"
            "print(shrink.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "archsearch._shrink"
