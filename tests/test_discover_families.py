"""`archsearch discover --method M` for the pruning families beyond slimming/sss: a real
(tiny) run on Fashion-MNIST writes a genome that meets the budget and is the one the pruner
derives from the written checkpoint."""

from __future__ import annotations

import json

import pytest

from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.discover import RethinkConfig, load_sparse_checkpoint, plan
from archsearch.genome import Genome
from archsearch.pruners import get_pruner, top_channels
from archsearch.rethink import LEGS, Rethink
from archsearch.sparsity import SparsityGenome, layout, make_genome
from tests.conftest import TINY_RESNET, write_space
from tests.test_discover import needs_fmnist

TRAINED = ["taylor", "pfa"]


def _discover(capsys, method: str, budget: str, out) -> dict:
    """`archsearch discover --json`, one epoch on 128 images: its printed document."""
    argv = ["discover", "--method", method, "--budget", budget, "--epochs", "1",
            "--subset", "128", "--out", str(out), "--json"]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def filter_norms(model, bound, group):
    """The L1 norm of every filter of a channel group, summed over its producers."""
    return sum(model.get_submodule(p).weight.detach().flatten(1).abs().sum(dim=1)
               for p in bound.graph.groups[group].producers)


@pytest.fixture
def tiny_space(tmp_path) -> str:
    return write_space(tmp_path, "tiny", TINY_RESNET)


@needs_fmnist
@pytest.mark.parametrize("method", TRAINED)
def test_discover_trained_method_real_data(method, capsys, tmp_path):
    out = tmp_path / method
    doc = _discover(capsys, method, "50%FLOPs", out)
    assert doc["method"] == method and doc["train"]["epochs"] == 1
    assert doc["cost"]["macs_ratio"] == pytest.approx(0.5, abs=0.005)
    genome = Genome.load(out / "genome.json")
    bound = bind("resnet20", "fashion-mnist")
    bound.validate(genome)
    assert genome.provenance["method"] == method
    pruner = get_pruner(method, bound)
    model = load_sparse_checkpoint(out / "sparse.pt", pruner)
    assert pruner.genome(model, "50%FLOPs").widths == genome.widths
    # `train --schedule finetune --from sparse.pt` inherits the method's channel choice
    argv = ["train", str(out / "genome.json"), "--schedule", "finetune", "--from",
            str(out / "sparse.pt"), "--epochs", "1", "--subset", "128", "--out",
            str(tmp_path / "ft"), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["schedule"] == "finetune"


def test_sparsity_option_is_refused_by_methods_without_it(capsys, tmp_path):
    code = main(["discover", "--method", "taylor", "--budget", "50%FLOPs", "--sparsity",
                 "1e-4", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "--sparsity applies to methods with a sparsity term (slimming, sss)" \
        ", not 'taylor'" in err


def test_thinet_discovers_predefined_widths_without_training(capsys, tmp_path):
    argv = ["discover", "--method", "thinet", "--budget", "50%FLOPs", "--stage-ratios",
            "0.5,0.75,1", "--dataset", "cifar10", "--data-root", "/nonexistent", "--out",
            str(tmp_path / "t"), "--json"]
    assert main(argv) == 0  # no data needed: the widths are predefined
    doc = json.loads(capsys.readouterr().out)
    l1 = get_pruner("l1norm", bind("resnet20", "cifar10"), stage_ratios=[0.5, 0.75, 1])
    assert Genome.load(tmp_path / "t" / "genome.json").widths == \
        l1.genome(None, "50%FLOPs").widths
    assert doc["train"] == {} and "checkpoint" not in doc["files"]


@needs_fmnist
def test_sfp_discover_leaves_the_pruned_filters_zeroed(capsys, tmp_path):
    out = tmp_path / "sfp"
    _discover(capsys, "sfp", "50%FLOPs", out)
    bound = bind("resnet20", "fashion-mnist")
    genome = Genome.load(out / "genome.json")
    model = load_sparse_checkpoint(out / "sparse.pt", get_pruner("sfp", bound))
    for group in bound.graph.prunable:
        norms = filter_norms(model, bound, group)
        assert int((norms == 0).sum()) == bound.graph.groups[group].size - \
            genome.widths[group]  # the end-of-epoch zeroing ran after the last epoch


@pytest.mark.parametrize("method", ["thinet", "sfp", "taylor", "pfa"])
def test_rethink_finetune_inherits_the_methods_channel_choice(method, tiny_space, tmp_path,
                                                              monkeypatch):
    the_plan = plan(RethinkConfig(method, "50%FLOPs", space=tiny_space,
                                  out=str(tmp_path / "r"), epochs=1, subset=96, seeds=1,
                                  test_subset=64, batch_size=32))
    pruner, seen = the_plan.pruner, []
    real_keep = pruner.keep

    def spy(model, genome):
        keep = real_keep(model, genome)
        seen.append((model, genome, keep))
        return keep

    monkeypatch.setattr(pruner, "keep", spy)
    doc = Rethink(the_plan, progress=False).run()
    assert [r["leg"] for r in doc["rows"]] == list(LEGS)
    ((model, genome, keep),) = seen  # the fine-tune leg asked the method, once
    bound = the_plan.bound
    if method == "sfp":  # the base it inherits from went through the soft pruning
        for group in bound.graph.prunable:
            norms = filter_norms(model, bound, group)
            assert set((norms > 0).nonzero().flatten().tolist()) == set(keep[group].tolist())
    else:  # statistics were recorded while the base trained, and rank the channels
        assert pruner.stats(model).recorded()
        ranked = top_channels(pruner.importance(model), genome, bound)
        assert {g: k.tolist() for g, k in keep.items()} == \
            {g: k.tolist() for g, k in ranked.items()}


@needs_fmnist
def test_magnitude_discover_writes_a_sparsity_genome(capsys, tmp_path):
    out = tmp_path / "mag"
    doc = _discover(capsys, "magnitude", "10%params", out)
    assert doc["genome_kind"] == "sparsity"
    assert doc["cost"]["params_ratio"] == pytest.approx(0.1, abs=0.001)
    genome = SparsityGenome.load(out / "sparsity.json")
    bound = bind("resnet20", "fashion-mnist")
    pruner = get_pruner("magnitude", bound)
    model = load_sparse_checkpoint(out / "sparse.pt", pruner)  # the dense trained base
    assert pruner.genome(model, "10%params").density == genome.density
    assert [r["layer"] for r in doc["layers"]] == list(layout(bound).numel)


def test_rethink_magnitude_cli(tiny_space, tmp_path, capsys):
    argv = ["rethink", "--method", "magnitude", "--budget", "20%params", "--space",
            tiny_space, "--epochs", "1", "--subset", "96", "--seeds", "1", "--test-subset",
            "64", "--batch-size", "32", "--out", str(tmp_path / "r"), "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["genome_kind"] == "sparsity"
    assert [r["leg"] for r in doc["rows"]] == list(LEGS)
    for leg in doc["legs"]:
        if leg["leg"] != "base":
            assert leg["params_ratio"] == pytest.approx(0.2, abs=0.002)
            assert leg["max_density_error"] < 1e-6  # the masks held through training
    seed = SparsityGenome.load(tmp_path / "r" / "seed0" / "sparsity.json")
    assert seed.provenance["method"] == "magnitude"
    assert "random mask" in (tmp_path / "r" / "rethink.md").read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["discover", "--method", "magnitude", "--budget", "0.5%params"], "never pruned"),
    (["discover", "--method", "slimming", "--budget", "50%FLOPs", "--scope", "layer"],
     "--scope applies to magnitude"),
    (["rethink", "--method", "magnitude", "--budget", "50%FLOPs", "--sparsity", "1"],
     "(slimming, sss), not 'magnitude'"),
    (["discover", "--method", "sfp", "--budget", "50%FLOPs", "--stage-ratios", "1,2,1"],
     "stage_ratios must be in (0, 1]"),
])
def test_bad_input_for_new_methods_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main([*argv, "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_guided_sparsity_discover_follows_a_found_genome(capsys, tmp_path):
    bound = bind("vgg11", "cifar10")
    names = list(layout(bound).numel)[:-1]
    guide = make_genome(bound, {m: 0.9 - 0.1 * i for i, m in enumerate(names)})
    path = guide.save(tmp_path / "guide.json")
    argv = ["discover", "--method", "guided-sparsity", "--guide", str(path), "--budget",
            "20%params", "--space", "vgg16", "--dataset", "cifar10", "--data-root",
            "/nonexistent", "--out", str(tmp_path / "g"), "--json"]
    assert main(argv) == 0  # no training, no data
    doc = json.loads(capsys.readouterr().out)
    assert doc["cost"]["params_ratio"] == pytest.approx(0.2, abs=0.002)
    genome = SparsityGenome.load(tmp_path / "g" / "sparsity.json")
    assert genome.space == "vgg16" and genome.provenance["guides"] == [str(path)]
    assert "checkpoint" not in doc["files"]
    code = main(["discover", "--method", "slimming", "--guide", str(path), "--budget",
                 "50%FLOPs", "--out", str(tmp_path / "x")])
    assert code == 2 and "--guide applies to guided-sparsity" in capsys.readouterr().err
