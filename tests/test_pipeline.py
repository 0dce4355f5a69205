"""archsearch.pipeline: `inherit` takes the method a checkpoint records (never a guess), and
the trainer reports to a progress object through on_step/on_epoch."""

from __future__ import annotations

import pytest
import torch

from archsearch import bind, parse_budget
from archsearch.data import load_data
from archsearch.errors import ArchsearchError
from archsearch.pipeline import inherit, load_base
from archsearch.pruners import get_pruner
from archsearch.train import TrainConfig, train
from tests.conftest import TINY_RESNET, write_space


@pytest.fixture
def bound(tmp_path):
    return bind(write_space(tmp_path, "tiny", TINY_RESNET))


def test_inherit_uses_the_recorded_method_and_refuses_a_checkpoint_without_one(bound,
                                                                               tmp_path):
    torch.manual_seed(0)
    base = bound.base_model()
    genome = bound.uniform(parse_budget("50%FLOPs"))
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": base.state_dict()}, plain)
    with pytest.raises(ArchsearchError, match="records method=None"):
        inherit(bound, genome, plain)

    recorded = tmp_path / "l1.pt"
    torch.save({"state_dict": base.state_dict(), "method": "l1norm"}, recorded)
    model = inherit(bound, genome, recorded).eval()
    l1 = get_pruner("l1norm", bound)
    expected = bound.build(genome, l1.keep(base, genome), base).eval()
    x = torch.randn(2, *bound.info.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), expected(x))

    run_ckpt = tmp_path / "run.pt"  # a base run's checkpoint: the method in its genome
    base_genome = bound.base_genome()
    base_genome.provenance["method"] = "l1norm"
    torch.save({"state_dict": base.state_dict(), "genome": base_genome.to_dict()}, run_ckpt)
    with torch.no_grad():
        assert torch.equal(inherit(bound, genome, run_ckpt).eval()(x), expected(x))
    with pytest.raises(ArchsearchError, match="no checkpoint at"):
        load_base(tmp_path / "missing.pt", l1)


class Recorder:
    def __init__(self):
        self.calls: list[tuple] = []

    def on_start(self, epochs, steps, done):
        self.calls.append(("start", epochs, steps, done))

    def on_step(self, epoch):
        self.calls.append(("step", epoch))

    def on_epoch(self, record):
        self.calls.append(("epoch", record["epoch"]))

    def on_end(self):
        self.calls.append(("end",))


def test_the_trainer_reports_through_the_progress_callbacks(bound):
    splits = load_data("synthetic", size=128, val_fraction=0.0)
    seen = Recorder()
    train(bound.base_model(), splits, TrainConfig(epochs=2, batch_size=64, device="cpu"),
          progress=seen)
    assert seen.calls == [("start", 2, 2, 0), ("step", 0), ("step", 0), ("epoch", 1),
                          ("step", 1), ("step", 1), ("epoch", 2), ("end",)]
