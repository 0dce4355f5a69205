"""Planted structure for `lasso` (He et al. 2017): channels nothing reads are never kept, a
channel whose contribution another one can carry is the one dropped, and the least-squares
rescaling of the kept channels reconstructs the base's outputs exactly when that is possible."""

from __future__ import annotations

import pytest
import torch

from archsearch.build import bind
from archsearch.pruners import LassoPruner, get_pruner
from archsearch.pruners._lasso import lasso_rank, lasso_select, refit
from tests.test_pruner_planted_families import (
    DATASET,
    MUTED,
    SPACE,
    keeps_none_of_the_muted,
    steps,
)


def _contributions() -> torch.Tensor:
    """Six channels: 0 contributes almost nothing, 3 is channel 1 at half the scale."""
    gen = torch.Generator().manual_seed(0)
    contrib = torch.randn(300, 6, generator=gen)
    contrib[:, 0] *= 0.01
    contrib[:, 3] = 0.5 * contrib[:, 1]
    return contrib


def test_lasso_selects_the_channels_that_carry_the_output() -> None:
    contrib = _contributions()
    assert lasso_select(contrib, 4).tolist() == [1, 2, 4, 5]  # 0 (tiny) and 3 (redundant) go
    assert lasso_select(contrib, 5).tolist() == [0, 1, 2, 4, 5]
    for k in range(1, 7):
        keep = lasso_select(contrib, k)
        assert len(keep) == k == len(keep.unique())  # exactly the width asked for
    rank = lasso_rank(contrib)
    assert max(rank[0], rank[3]) < min(rank[1], rank[2], rank[4], rank[5])
    # least squares on the kept channels: 1 carries 3's share, the output is reconstructed
    keep = lasso_select(contrib, 4)
    beta = refit(contrib, keep)
    assert beta.tolist() == pytest.approx([1.5, 1.0, 1.0, 1.0], abs=0.01)
    y = contrib.double().sum(dim=1)
    residual = y - contrib.double()[:, keep] @ beta
    assert float(residual.norm() / y.norm()) < 0.01


def test_lasso_removes_channels_the_next_layer_does_not_read() -> None:
    pruner = LassoPruner(bind(SPACE, DATASET), per_step=32)
    model = keeps_none_of_the_muted(pruner, n=8)
    scores = pruner.importance(model)
    for group, planted in MUTED.items():  # the ranking agrees: muted channels score lowest
        others = [c for c in range(len(scores[group])) if c not in planted]
        assert float(scores[group][planted].max()) < float(scores[group][others].min())


def test_lasso_rescaling_reconstructs_the_base_output() -> None:
    """Channel B duplicates channel A (same filter, same BatchNorm) and the next layer reads
    it at half A's weights: removing B and scaling A's outgoing weights by 1.5 gives the
    base's outputs exactly. lasso's fine-tune start does that; keeping the weights as they
    are (as the other selectors do) does not."""
    torch.manual_seed(0)
    bound = bind(SPACE, DATASET)
    pruner = get_pruner("lasso", bound, per_step=64)
    model = pruner.prepare(bound.base_model())
    planted = {"features.0": (2, 5, "features.1", "features.4"),
               "features.8": (10, 200, "features.9", "features.11")}
    with torch.no_grad():
        for conv, (a, b, norm, reader) in planted.items():
            model.get_submodule(conv).weight[b] = model.get_submodule(conv).weight[a]
            bn = model.get_submodule(norm)
            for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                tensor[b] = tensor[a]
            model.get_submodule(reader).weight[:, b] = 0.5 * model.get_submodule(
                reader).weight[:, a]
    steps(pruner, model, n=8)  # 512 sampled windows per reading layer
    widths = bound.graph.base_widths()
    genome = bound.genome({**widths, "features.0": 63, "features.8": 255})
    keep = pruner.keep(model, genome)
    for group, (a, b, _, _) in planted.items():
        assert a in keep[group].tolist() and b not in keep[group].tolist()
    base = pruner.restore(model).eval()
    x = torch.randn(8, *bound.info.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = base(x)
        got = pruner.pruned(model, genome).eval()(x)
        plain = bound.build(genome, keep, pruner.restore(model)).eval()(x)
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) < 1e-3 * scale
    assert float((plain - want).abs().max()) > 1e-2 * scale


def test_rethink_finetunes_from_the_rescaled_lasso_model(tmp_path, monkeypatch) -> None:
    from archsearch.discover import RethinkConfig, plan
    from archsearch.rethink import LEGS, Rethink
    from tests.conftest import TINY_RESNET, write_space

    space = write_space(tmp_path, "tiny", TINY_RESNET)
    the_plan = plan(RethinkConfig("lasso", "50%FLOPs", space=space, out=str(tmp_path / "r"),
                                  epochs=1, subset=96, seeds=1, test_subset=64, batch_size=32))
    pruner, seen = the_plan.pruner, []
    real = pruner.pruned

    def spy(model, genome):
        start = real(model, genome)
        seen.append((model, genome, {k: v.clone() for k, v in start.state_dict().items()}))
        return start

    monkeypatch.setattr(pruner, "pruned", spy)
    doc = Rethink(the_plan, progress=False).run()
    assert [r["leg"] for r in doc["rows"]] == list(LEGS)
    ((model, genome, start),) = seen  # the fine-tune leg started from lasso's model, once
    assert pruner.stats(model).recorded()
    plain = the_plan.bound.build(genome, pruner.keep(model, genome),
                                 pruner.restore(model).cpu()).state_dict()
    changed = {k for k, v in start.items() if not torch.equal(v, plain[k])}
    readers = {f"{m}.weight" for group in genome.widths for m, _ in pruner._readers[group]}
    assert changed and changed <= readers  # only the layers reading a pruned group rescaled
