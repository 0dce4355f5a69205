"""Cheap evaluators on a tiny space: the supernet's masked forward is the sliced network,
scores are finite and deterministic, and a starved genome scores below the uniform one
after the supernet / the base was trained on planted synthetic data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archsearch import shrink
from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.data import load_data
from archsearch.errors import ArchsearchError
from archsearch.search import Parameterisation
from archsearch.search._evaluators import AdaptiveBNEvaluator, Scoring, load_base
from archsearch.search._supernet import (
    Supernet,
    SupernetEvaluator,
    SupernetSchedule,
    supernet_for,
    train_supernet,
)
from tests.conftest import write_space

TINY = {"tinyres": 'family = "resnet_cifar"\ndepth = 8\nwidths = [8, 16, 32]',
        "tinyvgg": 'family = "vgg"\ncfg = [8, "M", 16, "M", 32, 32]'}
BUDGET = "40%FLOPs"


@pytest.fixture(autouse=True)
def tiny_spaces(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("spaces")
    for name, model in TINY.items():
        write_space(folder, name, model)
    monkeypatch.setenv("ARCHSEARCH_SPACES", str(folder))


@pytest.fixture(scope="module")
def splits():
    return load_data("synthetic", size=1024)


def _scramble(model: nn.Module) -> None:
    """Random BatchNorm parameters and statistics: slicing must carry all of them."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=gen))
                mod.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                mod.weight.copy_(torch.randn(n, generator=gen))
                mod.bias.copy_(torch.randn(n, generator=gen))


@pytest.mark.parametrize("space", sorted(TINY))
def test_supernet_full_width_slice_reproduces_its_forward_exactly(space):
    bound = bind(space, "synthetic")
    supernet = Supernet(bound)
    _scramble(supernet.model)
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    supernet.model.eval()
    sliced = supernet.slice(bound.base_genome()).eval()
    with torch.no_grad():
        assert torch.equal(sliced(x), supernet.model(x))
        with supernet.at(bound.graph.base_widths()) as masked:
            assert torch.equal(masked(x), supernet.model(x))


@pytest.mark.parametrize("space", sorted(TINY))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_masked_supernet_at_a_genome_equals_shrink_of_the_same_weights(space, mode):
    bound = bind(space, "synthetic")
    supernet = Supernet(bound)
    _scramble(supernet.model)
    gen = torch.Generator().manual_seed(2)
    widths = {g: int(torch.randint(1, size + 1, (1,), generator=gen))
              for g, size in bound.graph.base_widths().items()}
    genome = bound.genome(widths)
    keep = {g: torch.arange(w) for g, w in widths.items()}
    reference = shrink(supernet.model, genome, keep, graph=bound.graph)
    sliced = supernet.slice(genome)
    x = torch.randn(6, 3, 32, 32, generator=gen)
    for m in (reference, sliced, supernet.model):
        m.train(mode == "train")
    with torch.no_grad(), supernet.at(widths) as masked:
        out = masked(x)
        assert torch.allclose(out, reference(x), atol=1e-5, rtol=1e-5)
        assert torch.equal(sliced(x), reference(x))
    narrower = sum(widths.values()) < sum(bound.graph.base_widths().values())
    assert narrower and not torch.allclose(out, supernet.model.eval()(x))


def test_masked_supernet_without_a_block_equals_shrink_that_cuts_it():
    bound = bind("tinyres", "synthetic")
    assert list(bound.graph.blocks) == ["layer1.0"]
    supernet = Supernet(bound)
    _scramble(supernet.model)
    widths = {g: max(1, size // 2) for g, size in bound.graph.base_widths().items()}
    genome = bound.genome(widths, {"layer1.0": False})
    keep = {g: torch.arange(w) for g, w in widths.items()}
    reference = shrink(supernet.model, genome, keep, graph=bound.graph).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    supernet.model.eval()
    with torch.no_grad():
        with supernet.at(widths, {"layer1.0"}) as masked:
            out = masked(x)
        with supernet.at(widths) as masked:
            kept = masked(x)
        assert torch.allclose(out, reference(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out, kept)
        assert torch.equal(supernet.slice(genome).eval()(x), reference(x))


def _genomes(bound):
    """The uniform genome and one with the last stage starved (1 channel into the head)."""
    param = Parameterisation(bound, parse_budget(BUDGET))
    uniform = bound.uniform(param.budget)
    last = max(bound.graph.stages().values()) - (1 if bound.space.family == "vgg" else 0)
    shape = {g: (0.01 if s == last else 1.0) for g, s in bound.graph.stages().items()}
    starved = param.project(shape)
    assert min(starved.widths[g] for g, s in bound.graph.stages().items() if s == last) <= 2
    assert abs(starved.cost["macs"] - uniform.cost["macs"]) <= 0.02 * uniform.cost["macs"]
    return uniform, starved


SCORING = Scoring(calib_images=128, val_images=None, seed=0, device="cpu")


def test_supernet_scores_are_finite_deterministic_and_rank_a_starved_genome_low(
        splits, tmp_path):
    bound = bind("tinyres", "synthetic")
    schedule = SupernetSchedule(epochs=3, subset=1.0, batch_size=32, random_widths=1,
                                min_ratio=0.2, device="cpu")
    supernet = supernet_for(bound, splits, schedule, tmp_path)
    assert (tmp_path / "supernet" / "checkpoint.pt").is_file()  # the trainer's run folder
    evaluator = SupernetEvaluator(supernet, splits, SCORING)
    uniform, starved = _genomes(bound)
    scores = [evaluator(uniform, None), evaluator(starved, None), evaluator(uniform, None)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] == scores[2]
    assert scores[1] < scores[0] - 0.1, scores
    again = SupernetEvaluator(supernet_for(bound, splits, schedule, tmp_path), splits, SCORING)
    assert again(uniform, None) == scores[0]  # loaded from the run folder, same score


def test_supernet_training_resumes_to_the_same_weights(splits, tmp_path):
    bound = bind("tinyvgg", "synthetic")
    short = SupernetSchedule(epochs=2, subset=256, batch_size=64, device="cpu")
    whole = train_supernet(bound, splits, short, tmp_path / "a")
    # stop after epoch 1 (a checkpoint of a 2-epoch schedule), then resume
    path = tmp_path / "b"
    with pytest.raises(_Stop):
        train_supernet(bound, splits, short, path, on_epoch=lambda r: _stop(r, 1))
    resumed = train_supernet(bound, splits, short, path)
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k


def test_supernet_checkpoint_records_its_training_epochs_and_seconds(splits, tmp_path):
    from archsearch.search import supernet_cost

    bound = bind("tinyvgg", "synthetic")
    schedule = SupernetSchedule(epochs=2, subset=256, batch_size=64, device="cpu")
    path = tmp_path / "supernet"
    assert supernet_cost(path) is None
    with pytest.raises(_Stop):
        train_supernet(bound, splits, schedule, path, on_epoch=lambda r: _stop(r, 1))
    first = supernet_cost(path)
    assert first["epoch"] == 1 and first["epochs"] == 2 and first["train_s"] > 0
    train_supernet(bound, splits, schedule, path)  # resumes: the seconds add up
    done = supernet_cost(path)
    assert done["epoch"] == 2 and done["train_s"] > first["train_s"]
    train_supernet(bound, splits, schedule, path)  # nothing left to train: unchanged
    assert supernet_cost(path) == done
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArchsearchError, match="cannot load supernet checkpoint"):
        supernet_cost(tmp_path / "junk")


def test_supernet_trains_through_the_trainer_in_its_run_folder(splits, tmp_path):
    """The supernet's run folder is the trainer's (config, metrics, checkpoint, result) plus
    supernet.json; an interrupted run resumes to the uninterrupted run's records."""
    import json

    from archsearch.search._supernet import train_config
    from archsearch.train import load_checkpoint

    bound = bind("tinyres", "synthetic")
    schedule = SupernetSchedule(epochs=2, subset=256, batch_size=64, random_widths=1,
                                device="cpu")
    whole = tmp_path / "whole"
    train_supernet(bound, splits, schedule, whole)
    assert {p.name for p in whole.iterdir()} == {
        "config.json", "metrics.jsonl", "checkpoint.pt", "result.json", "supernet.json"}
    doc = load_checkpoint(whole / "checkpoint.pt")  # weights_only, the trainer's format
    assert doc["format"] == "archsearch.checkpoint" and (doc["epoch"], doc["epochs"]) == (2, 2)
    assert doc["config"] == train_config(schedule).to_dict()
    config = doc["config"]
    assert (config["lr"], config["momentum"], config["weight_decay"], config["nesterov"],
            config["lr_schedule"], config["eval_split"]) == (0.1, 0.9, 1e-4, True, "step", "val")
    records = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == [0.1, pytest.approx(0.01)]  # the step schedule
    assert json.loads((whole / "supernet.json").read_text())["schedule"]["random_widths"] == 1

    cut = tmp_path / "cut"
    with pytest.raises(_Stop):
        train_supernet(bound, splits, schedule, cut, on_epoch=lambda r: _stop(r, 1))
    train_supernet(bound, splits, schedule, cut)
    resumed = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    keys = ("epoch", "lr", "train_loss", "train_acc", "eval_acc")
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in records]


def test_a_supernet_folder_resumes_only_its_own_training(splits, tmp_path):
    bound = bind("tinyvgg", "synthetic")
    schedule = SupernetSchedule(epochs=2, subset=128, batch_size=64, device="cpu")
    path = tmp_path / "net"
    with pytest.raises(_Stop):
        train_supernet(bound, splits, schedule, path, on_epoch=lambda r: _stop(r, 1))
    other = SupernetSchedule(epochs=2, subset=128, batch_size=64, random_widths=1,
                             device="cpu")
    with pytest.raises(ArchsearchError, match="was trained with"):
        train_supernet(bound, splits, other, path)
    (path / "supernet.json").unlink()
    with pytest.raises(ArchsearchError, match="not a supernet's run folder"):
        train_supernet(bound, splits, schedule, path)
    train_supernet(bound, splits, schedule, tmp_path / "junk")  # a whole training
    (tmp_path / "junk" / "checkpoint.pt").write_bytes(b"damaged")
    with pytest.raises(ArchsearchError, match="cannot load supernet checkpoint") as err:
        train_supernet(bound, splits, schedule, tmp_path / "junk")
    assert len(str(err.value).splitlines()) == 1


def test_the_supernet_trains_on_a_streamed_image_folder(tmp_path):
    """The trainer's batches stream a folder dataset: the supernet no longer needs one in
    memory."""
    from archsearch.data import dataset_info
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=8,
                               size=(16, 16))
    (folder / "dataset.toml").write_text("in_memory = false\n")
    streamed = load_data(dataset_info(str(folder)), val_fraction=0.25)
    assert not hasattr(streamed.train, "images")
    streamed.train.workers = streamed.val.workers = 0  # decode in-process: 2 cores
    bound = bind("tinyvgg", str(folder))
    schedule = SupernetSchedule(epochs=1, subset=1.0, batch_size=8, random_widths=1,
                                device="cpu")
    supernet = train_supernet(bound, streamed, schedule, tmp_path / "net")
    assert (tmp_path / "net" / "result.json").is_file()
    assert all(torch.isfinite(v).all() for v in supernet.model.state_dict().values())


class _Stop(Exception):
    pass


def _stop(record, epoch):
    if record["epoch"] == epoch:
        raise _Stop


def test_adaptive_bn_scores_are_deterministic_and_rank_a_starved_genome_low(splits, tmp_path):
    from archsearch.train import TrainConfig, train

    bound = bind("tinyres", "synthetic")
    torch.manual_seed(0)
    model = bound.base_model()
    config = TrainConfig(schedule="base", epochs=3, batch_size=32, eval_split="val",
                         seed=0, device="cpu")
    train(model, splits, config, run_dir=tmp_path / "base", progress=False)
    base, pruner = load_base(tmp_path / "base" / "checkpoint.pt", bound)
    assert pruner.name == "l1norm"
    evaluator = AdaptiveBNEvaluator(bound, base, pruner, splits, SCORING)
    uniform, starved = _genomes(bound)
    scores = [evaluator(uniform, None), evaluator(starved, None), evaluator(uniform, None)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] == scores[2]
    assert scores[1] < scores[0] - 0.1, scores


def test_proxy_scores_are_deterministic_and_rank_a_starved_genome_low(splits):
    from archsearch.search import ProxyEvaluator, ProxySchedule

    schedule = ProxySchedule(epochs=3, subset=1.0, batch_size=32, device="cpu")
    evaluator = ProxyEvaluator("synthetic", schedule, splits=splits)
    uniform, starved = _genomes(bind("tinyres", "synthetic"))
    scores = [evaluator(uniform, None), evaluator(starved, None), evaluator(uniform, None)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] == scores[2]
    assert scores[1] < scores[0] - 0.1, scores


def test_a_sandwich_step_leaves_the_bn_statistics_to_the_widest(splits):
    """The subnetworks of a sandwich step normalise by their batch but do not move the
    running statistics: after a step (lr 0, weights unchanged) they are exactly those of
    one widest forward on the batch, so the trainer's full-width evaluation
    reads the widest network's statistics."""
    import copy

    from archsearch.search._supernet import SandwichStep, frozen_bn_stats, train_config
    from archsearch.train._device import resolve_precision
    from archsearch.train._dist import World

    bound = bind("tinyres", "synthetic")
    supernet = Supernet(bound)
    schedule = SupernetSchedule(random_widths=2, device="cpu")
    model = supernet.model
    reference = copy.deepcopy(model).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    device = torch.device("cpu")
    import dataclasses

    config = dataclasses.replace(train_config(schedule), fast=False, channels_last=False)
    step = SandwichStep(supernet, schedule, model, opt, config, device,
                        resolve_precision("off", device), World())
    step.begin_epoch(0.0, 0)
    x = splits.train.images[:32].float() / 255.0
    x = x if x.dim() == 4 else x.unsqueeze(1)
    y = splits.train.labels[:32].long()
    step(x, y)
    with torch.no_grad():
        reference(x)
    norms = [(a, b) for a, b in zip(model.modules(), reference.modules(), strict=True)
             if isinstance(a, nn.BatchNorm2d)]
    assert norms
    for a, b in norms:
        assert torch.allclose(a.running_mean, b.running_mean, rtol=1e-5, atol=1e-7)
        assert torch.allclose(a.running_var, b.running_var, rtol=1e-5, atol=1e-7)
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked) == 1
    before = [a.running_mean.clone() for a, _ in norms]
    with frozen_bn_stats(model), torch.no_grad():
        model(x * 2 + 1)
    assert all(torch.equal(a.running_mean, m) for (a, _), m in zip(norms, before, strict=True))
    assert all(a.momentum == b.momentum for a, b in norms)  # restored
    with pytest.raises(ArchsearchError, match="amp is one of"):
        resolve_precision("fp32", device)  # not a mode: it once meant auto, silently


def test_naswot_is_the_log_determinant_of_the_activation_code_kernel():
    """On a bare ReLU the codes are the inputs' signs: K[i, j] counts the units where images
    i and j agree, and the score is log det K, computed here by hand; identical images give
    a singular kernel (-inf); a model with a functional ReLU is read at its BatchNorms, which
    give the same codes as the ReLU modules after them."""
    import math

    from archsearch.search._zero_cost import coded_modules, naswot_score

    x = torch.tensor([[1.0, -1.0, 2.0, 0.5], [-1.0, -2.0, 3.0, 1.0], [1.0, 1.0, -1.0, -1.0]])
    c = (x > 0).double()
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    assert kernel.tolist() == [[4, 3, 1], [3, 4, 0], [1, 0, 4]]
    assert naswot_score(nn.ReLU(), x) == pytest.approx(math.log(torch.det(kernel).item()))
    assert naswot_score(nn.ReLU(), x[:1].repeat(3, 1)) == float("-inf")

    class Functional(nn.Module):
        def __init__(self, conv, bn):
            super().__init__()
            self.conv, self.bn = conv, bn

        def forward(self, v):
            return torch.relu(self.bn(self.conv(v)))

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
    images = torch.randn(16, 3, 8, 8)
    modules = nn.Sequential(conv, bn, nn.ReLU())
    functional = Functional(conv, bn)
    assert [type(m) for m in coded_modules(functional)] == [nn.BatchNorm2d]
    assert naswot_score(functional, images) == pytest.approx(naswot_score(modules, images))


def test_naswot_scores_genomes_at_their_seeded_init_without_training(splits):
    """The evaluator builds each genome at the same seeded init and scores one fixed batch:
    deterministic, finite, and a genome whose layers are all at the floor (fewer units to
    tell images apart) scores below the full-width one."""
    import math

    from archsearch.search._zero_cost import NaswotEvaluator

    bound = bind("tinyvgg", "synthetic")
    evaluator = NaswotEvaluator(bound, splits, Scoring(calib_images=64, seed=0))
    full = bound.base_genome()
    narrow = bound.genome({g: 1 for g in bound.graph.prunable})
    score = evaluator(full, None)
    assert score == evaluator(full, None) and math.isfinite(score)
    assert evaluator(narrow, None) < score
    other = NaswotEvaluator(bound, splits, Scoring(calib_images=64, seed=1))(full, None)
    assert other != score  # another init and batch: another draw
