"""Pruners inside the real trainer: the regularizer hook shrinks what it should, and the
genome follows the trained scales."""

from __future__ import annotations

import pytest
import torch

from archsearch.build import bind
from archsearch.data import load_data
from archsearch.pruners import SlimmingPruner, SSSPruner
from archsearch.train import TrainConfig, seed_everything, train
from tests.conftest import write_space

TINY = 'family = "resnet_cifar"\ndepth = 14\nwidths = [8, 16, 16]'


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    bound = bind(write_space(tmp_path_factory.mktemp("space"), "tiny", TINY), "synthetic")
    return bound, load_data("synthetic", val_fraction=0.1, size=256)


def _train(pruner, splits, seed=0):
    seed_everything(seed)
    model = pruner.prepare(pruner.bound.base_model())
    cfg = TrainConfig(schedule="base", epochs=2, batch_size=32, seed=seed, eval_split="val",
                      channels_last=False)
    return train(model, splits, cfg, regularizer=pruner.regularize, progress=False).model


def _gammas(pruner, model):
    return torch.cat(list(pruner.importance(model).values()))


def test_slimming_l1_term_shrinks_bn_scales_in_training(setup):
    bound, splits = setup
    plain = SlimmingPruner(bound, sparsity=0.0)
    sparse = SlimmingPruner(bound, sparsity=5e-2)
    g_plain = _gammas(plain, _train(plain, splits))
    model = _train(sparse, splits)
    g_sparse = _gammas(sparse, model)
    assert g_sparse.mean() < 0.9 * g_plain.mean()
    # the genome keeps, per group, the channels with the largest trained scales
    genome = sparse.genome(model, "50%FLOPs")
    keep = sparse.keep(model, genome)
    scores = sparse.importance(model)
    for group, idx in keep.items():
        dropped = torch.ones(len(scores[group]), dtype=torch.bool)
        dropped[idx] = False
        if dropped.any():
            assert scores[group][idx].min() >= scores[group][dropped].max()


def test_sss_apg_in_the_trainer_zeroes_blocks_that_the_genome_removes(setup):
    bound, splits = setup
    pruner = SSSPruner(bound, sparsity=1.0, gate_lr=0.1)
    model = _train(pruner, splits)
    gates = pruner.gates(model)
    zero = {b for b, f in gates.items() if f == 0.0}
    assert zero, gates  # the proximal step reaches exact zeros
    full = dict.fromkeys(bound.graph.blocks, True)
    macs = bound.costs.cost({}, {**full, **dict.fromkeys(zero, False)}).macs
    genome = pruner.genome(model, f"{macs}FLOPs")
    assert genome.removed_blocks() == zero
