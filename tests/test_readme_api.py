"""The README's "Python API" example runs as written (discover → genome → train)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archsearch.genome import Genome

README = Path(__file__).resolve().parent.parent / "README.md"


def api_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section has one python block"
    return blocks[0]


def test_the_package_exports_the_core_concepts():
    import archsearch

    for name in ("Space", "load_space", "bind", "Genome", "parse_budget", "fit_to_budget",
                 "shrink", "Cost", "genome_cost"):
        assert name in archsearch.__all__ and getattr(archsearch, name) is not None
    budget = archsearch.parse_budget("50%FLOPs")
    assert (budget.metric, budget.value, budget.relative) == ("macs", pytest.approx(0.5), True)
    with pytest.raises(AttributeError):
        archsearch.discover_everything  # noqa: B018


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(api_example(), "README.md:Python API", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert re.search(r"slimming genome: \d+% of the MACs", out)
    assert re.search(r"test accuracy after one epoch: \d+\.\d%", out)
    genome = Genome.load(tmp_path / "runs" / "api-example" / "genome.json")
    assert genome.cost["macs_ratio"] == pytest.approx(0.5, abs=0.01)
    assert (tmp_path / "runs" / "api-example" / "sparse.pt").exists()
