"""The README's "Python API" examples run as written: discover → genome → train, and a
pruning method in the user's own training loop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from archsearch.genome import Genome

README = Path(__file__).resolve().parent.parent / "README.md"
OWN_LOOP = "### Your own model and training loop"


def _block(text: str, where: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, f"{where} has one python block"
    return blocks[0]


def _section() -> tuple[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    assert OWN_LOOP in section, f"the Python API section has a {OWN_LOOP!r} subsection"
    first, own = section.split(OWN_LOOP, 1)
    return first, own


def api_example() -> str:
    return _block(_section()[0], "the Python API section (before its subsection)")


def own_loop_example() -> str:
    return _block(_section()[1], OWN_LOOP)


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


def test_readme_own_training_loop_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    ns: dict = {"__name__": "__readme__"}
    exec(compile(own_loop_example(), "README.md:own loop", "exec"), ns)
    out = capsys.readouterr().out
    assert re.search(r"(49|50|51)% of the MACs, widths \{'0': \d+, '3': \d+\}", out), out
    genome = Genome.load(tmp_path / "genome.json")
    assert genome.widths == ns["genome"].widths and genome.provenance["method"] == "slimming"
    small, scratch, model = ns["small"], ns["scratch"], ns["model"]
    x = ns["images"][:8]
    assert small(x).shape == scratch(x).shape == (8, 10)
    assert genome.widths["0"] + genome.widths["3"] < 32 + 64
    for name in ("0", "3"):  # fx: the shrunk model keeps the module names
        assert small.get_submodule(name).out_channels == genome.widths[name]
        assert scratch.get_submodule(name).out_channels == genome.widths[name]
    # inherited: each of the small model's first filters is one of the trained model's
    rows = model[0].weight.detach().flatten(1)
    kept = small.get_submodule("0").weight.detach().flatten(1)
    assert all((rows == row).all(dim=1).any() for row in kept)
    fresh = scratch.get_submodule("0").weight.detach().flatten(1)
    assert not any((rows == row).all(dim=1).any() for row in fresh)
