"""`archsearch search --genome-kind sparsity`: every candidate meets the budget with the shape
it sampled, the guided sampler proposes around the guides' pattern, a trial trains a randomly
masked base whose masks hold, bad input is one line and exit 2, and a short real search on
Fashion-MNIST runs, resumes and exports sparsity genomes; `show` displays one."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import optuna
import pytest

from archsearch.budget import TOLERANCE, parse_budget
from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.search import (
    ProxySchedule,
    SearchConfig,
    SparseParameterisation,
    SparseProxyEvaluator,
    open_search,
    search_kind,
)
from archsearch.sparsity import (
    SparsityGenome,
    conv_layers,
    density_of,
    layout,
    make_genome,
    sparse_cost,
    validate,
)
from tests.test_search_cli import ROOT, _fashion_mnist_available

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _profile(space: str, first: float, last: float, dataset: str = "fashion-mnist"
             ) -> SparsityGenome:
    """A sparsity genome whose density falls linearly with depth over the conv layers."""
    bound = bind(space, dataset)
    names = conv_layers(bound)
    values = np.linspace(first, last, len(names)).tolist()
    return make_genome(bound, dict(zip(names, values, strict=True)), {"method": "test"})


@pytest.mark.parametrize(("space", "dataset", "budget"), [
    ("vgg11", "fashion-mnist", "10%params"), ("resnet20", "synthetic", "30%FLOPs")])
def test_every_candidate_meets_the_budget_with_its_sampled_shape(space, dataset, budget):
    bound = bind(space, dataset)
    budget = parse_budget(budget)
    param = SparseParameterisation(bound, budget, tuple(conv_layers(bound)))
    target = budget.target(bound.base_cost)
    metric = "macs" if budget.metric == "macs" else "params"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(25):
        trial = study.ask()
        genome = param.suggest(trial)
        cost = genome.cost[metric]
        assert cost <= target and cost >= target * (1 - 1e-4), (cost, target)
        assert genome.cost == sparse_cost(bound, genome.density)
        assert set(genome.density) == set(conv_layers(bound))
        # the densities keep the sampled shape, up to one multiplier (unsaturated layers)
        free = [m for m, d in genome.density.items() if d < 1.0 and
                genome.density[m] * layout(bound).numel[m] >= 50]
        logs = [math.log(genome.density[m]) - trial.params[f"d.{m}"] for m in free]
        assert max(logs) - min(logs) < 0.05, logs
        seen.add(tuple(round(d, 4) for d in genome.density.values()))
        study.tell(trial, 0.0)
    assert len(seen) == 25  # every trial a different genome


def _search(tmp_path, guides, trials=200, **over):
    config = SearchConfig.from_flat(budget="10%params", out=str(tmp_path / "run"), space="vgg11",
                                    dataset="fashion-mnist", guides=[str(g) for g in guides],
                                    trials=trials, final=0, genome_kind="sparsity", **over)
    search = open_search(config, None)
    assert search.kind is search_kind("sparsity")  # a search over sparsity genomes
    return search


def _log_shapes(genomes):
    """Per genome, ln density minus its mean over the layers (the shape, scale removed)."""
    logs = np.log([[g.density[m] for m in sorted(g.density)] for g in genomes])
    return logs - logs.mean(axis=1, keepdims=True)


def test_guided_proposals_centre_on_the_guide_pattern(tmp_path):
    """A guide from another space (resnet20, 21 conv layers) transferred onto vgg11 (8):
    the first trial is its pattern exactly, the second the uniform density, and the
    sampled proposals scatter around the pattern (a random search's do not)."""
    guide = _profile("resnet20", 0.5, 0.2)
    path = guide.save(tmp_path / "guide.json")
    search = _search(tmp_path, [path])
    bound = search.bound
    target = parse_budget("10%params").target(bound.base_cost)

    def ask() -> SparsityGenome:
        genome = search.genome_for(search.study.ask())
        assert abs(genome.cost["params"] - target) <= TOLERANCE * target
        return genome

    pattern, uniform = ask(), ask()
    assert pattern.provenance["guide"] == str(path)
    assert uniform.provenance["baseline"] == "uniform"
    assert len(set(uniform.density.values())) == 1
    values = [pattern.density[m] for m in conv_layers(bound)]
    assert values[0] / values[-1] == pytest.approx(0.5 / 0.2, rel=0.01)  # the guide's trend
    proposals = [ask() for _ in range(40)]  # none finished: all guided, at the first sigma
    shapes, centre = _log_shapes(proposals), _log_shapes([pattern])[0]
    assert np.abs(shapes.mean(axis=0) - centre).max() < 0.08
    assert shapes.std(axis=0).min() > 0.05  # they explore, not all the pattern itself

    random = _search(tmp_path / "random", [])
    random.study.sampler = optuna.samplers.RandomSampler(seed=0)
    others = [random.genome_for(random.study.ask()) for _ in range(42)][1:]  # 0: uniform
    far = np.abs(_log_shapes(others).mean(axis=0) - centre).max()
    assert far > 3 * np.abs(shapes.mean(axis=0) - centre).max()


def test_a_trial_trains_a_random_mask_of_its_densities_and_the_mask_holds():
    from archsearch.data import load_data

    splits = load_data("synthetic", size=256)
    bound = bind("resnet20", "synthetic")
    genome = make_genome(bound, dict.fromkeys(conv_layers(bound), 0.3))
    evaluator = SparseProxyEvaluator("synthetic", ProxySchedule(epochs=2, subset=128,
                                                                batch_size=64), splits=splits)
    reports: list[tuple[int, float]] = []
    accuracy, model = evaluator.fit(genome, lambda e, a: reports.append((e, a)))
    assert [e for e, _ in reports] == [1, 2] and accuracy == reports[-1][1]
    kept = layout(bound).kept(genome.density)
    measured = density_of(model, bound)
    for m, k in kept.items():
        assert measured[m] == pytest.approx(k / layout(bound).numel[m], abs=1e-9), m
    assert evaluator(genome, None) == pytest.approx(accuracy)  # seeded: the same again


@pytest.mark.parametrize(("args", "message"), [
    (["--genome-kind", "channels"], "--genome-kind must be one of width, sparsity"),
    (["--evaluator", "adaptive-bn"], "adaptive-bn"),
    (["--evaluator", "supernet"], "--evaluator supernet"),
    (["--objectives", "accuracy,macs"], "--objectives"),
    (["--granularity", "stage"], "--granularity"),
    (["--budget", "0.01%params"], "cannot be met"),
    (["--guide", "missing.json"], "not found"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    argv = ["search", "--genome-kind", "sparsity", "--budget", "10%params", "--space", "vgg11",
            "--out", str(out), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith("archsearch: error:")
    assert not out.exists()


@pytest.mark.parametrize(("doc", "message"), [
    ("{", "malformed JSON"),
    (json.dumps({"format": "archsearch.genome", "version": 1, "space": "vgg11",
                 "widths": {}}), "not an archsearch sparsity genome"),
    (json.dumps({"format": "archsearch.sparsity", "version": 1, "space": "vgg11",
                 "density": {"features.1": 0.5}}), "unknown layer"),
    (json.dumps({"format": "archsearch.sparsity", "version": 1, "space": "vgg11",
                 "density": {"features.0": 1.5}}), "fraction in (0, 1]"),
])
def test_bad_guide_file_is_one_line_exit_2(tmp_path, capsys, doc, message):
    bad = tmp_path / "bad.json"
    bad.write_text(doc)
    out = tmp_path / "run"
    assert main(["search", "--genome-kind", "sparsity", "--budget", "10%params", "--space",
                 "vgg11", "--guide", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_show_displays_a_sparsity_genome(tmp_path, capsys):
    genome = _profile("resnet20", 0.8, 0.05, dataset="synthetic")
    path = genome.save(tmp_path / "s.json")
    assert main(["show", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    bound = bind("resnet20", "synthetic")
    assert doc["genome_kind"] == "sparsity" and doc["params"] == genome.cost["params"]
    assert doc["macs"] == genome.cost["macs"] and doc["base_params"] == bound.base_cost.params
    rows = {r["layer"]: r for r in doc["layers"]}
    assert set(rows) == set(layout(bound).numel)
    dropped = sum(r["weights"] - r["kept"] for r in rows.values())
    assert doc["params"] == bound.base_cost.params - dropped
    assert rows["fc"]["density"] == 1.0  # not pruned
    assert rows["conv1"]["kept"] == round(0.8 * rows["conv1"]["weights"])
    assert main(["show", str(path), "--plot", str(tmp_path / "d.png")]) == 0
    text = capsys.readouterr().out
    assert "layer3.2.conv2" in text and "non-zero params" in text and "80.1%" in text
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["show", str(path), "--budget", "50%FLOPs"]) == 2
    assert "--budget applies to a space" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not _fashion_mnist_available(), reason="Fashion-MNIST files not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_real_sparsity_search_on_fashion_mnist_runs_resumes_and_exports(tmp_path):
    """Two worker processes, real masked proxy training; rerun (resume), export, show,
    report."""
    guide = _profile("vgg11", 0.6, 0.1).save(tmp_path / "guide.json")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "archsearch", "search", "--genome-kind", "sparsity",
           "--space", "vgg11", "--budget", "10%params", "--guide", str(guide),
           "--trials", "2", "--final", "0", "--proxy-epochs", "1", "--proxy-subset", "128",
           "--proxy-val", "128", "--workers", "2", "--out", str(out), "--json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["tally"]["finished"] == 2 and doc["evaluator"] == "proxy"
    assert sorted(r["kind"] for r in doc["trials"]) == ["guide", "uniform"]
    for row in doc["trials"]:
        assert row["state"] == "complete" and 0.0 <= row["accuracy"] <= 1.0
        assert abs(row["params_ratio"] - 0.1) <= 1e-4
    best = SparsityGenome.load(out / "best_genome.json")
    validate(bind("vgg11", "fashion-mnist"), best)
    assert best.provenance["trial"] == doc["best"][0]["trial"]

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["tally"] == doc["tally"]  # resumed: nothing new to run

    exported = tmp_path / "exported"
    assert main(["export", str(out), "--top", "2", "--out", str(exported)]) == 0
    files = sorted(exported.glob("top*.json"))
    assert len(files) == 2
    top = SparsityGenome.load(files[0])
    assert top.provenance["val_accuracy"] == pytest.approx(doc["best"][0]["accuracy"])
    assert top.density == best.density
    assert main(["show", str(files[0])]) == 0
    assert main(["report", str(out)]) == 0
