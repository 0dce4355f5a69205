"""The trainer's pieces on their own, on real (tiny) computations: the run folder, the epoch
iterator, the step and its tally; and the size bound that keeps `train()` a short loop."""

from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path

import pytest
import torch

import archsearch.train
from archsearch.budget import parse_budget
from archsearch.errors import ArchsearchError
from archsearch.train import TrainConfig, load_checkpoint, seed_everything, train
from archsearch.train._device import resolve_precision
from archsearch.train._dist import World
from archsearch.train._epochs import Epochs
from archsearch.train._run import RunFolder
from archsearch.train._step import Step, Tally, sgd

TRAIN = Path(archsearch.train.__file__).parent
CPU = torch.device("cpu")


SYNTH_SIZE = 256


def small(bound, seed=0):
    genome = bound.uniform(parse_budget("5%FLOPs"))
    seed_everything(seed)
    return genome, bound.build(genome)


def cfg(**kw):
    return TrainConfig(**({"epochs": 4, "batch_size": 32, "lr": 0.05, "eval_split": "val",
                           "channels_last": False} | kw))


def _functions(path: Path) -> dict[str, int]:
    """Every function (methods included) in `path` and its length in lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_the_loop_and_every_trainer_function_stay_short():
    assert _functions(TRAIN / "_loop.py")["train"] <= 50
    for path in sorted(TRAIN.glob("*.py")):
        long = {name: n for name, n in _functions(path).items() if n > 50}
        assert not long, f"{path.name}: functions over 50 lines: {long}"
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 400, path.name


def test_the_size_walk_measures_real_functions(tmp_path):
    source = "def f():\n" + "    x = 1\n" * 60 + "class C:\n    def g(self):\n        pass\n"
    (tmp_path / "probe.py").write_text(source, encoding="utf-8")
    assert _functions(tmp_path / "probe.py") == {"f": 61, "g": 2}


def test_run_folder_resumes_at_the_checkpointed_epoch(synth, bound, tmp_path):
    genome, model = small(bound)

    def crash(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, synth, cfg(), genome=genome, run_dir=tmp_path, on_epoch=crash,
              progress=False)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    stale = tmp_path / ".checkpoint.pt.deadbeefp1-x.tmp"  # a write a kill interrupted
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200,) * 2)
    with (tmp_path / "metrics.jsonl").open("a") as fh:  # an epoch the checkpoint never saw
        fh.write(json.dumps({"epoch": 3}) + "\n")

    _, fresh = small(bound, seed=7)
    optimizer = sgd(fresh, cfg())
    run = RunFolder(tmp_path, True, cfg(), 4, genome)
    assert not stale.exists()
    with pytest.raises(ArchsearchError, match="--resume"):
        run.open(fresh, optimizer, resume=False)
    done, history = run.open(fresh, optimizer, resume=True)
    assert done == 2 and [r["epoch"] for r in history] == [1, 2]
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, saved["state_dict"][k]), k
    assert optimizer.state_dict()["state"]  # momentum buffers restored, not fresh
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    with pytest.raises(ArchsearchError, match="different settings.*epochs"):
        RunFolder(tmp_path, True, cfg(), 5, genome).open(fresh, optimizer, resume=True)


def test_a_run_folder_without_a_path_or_off_the_main_process_writes_nothing(bound, tmp_path):
    genome, model = small(bound)
    optimizer = sgd(model, cfg())
    nowhere = RunFolder(None, True, cfg(), 4, genome)
    assert nowhere.checkpoint is None and nowhere.open(model, optimizer, True) == (0, [])
    other_rank = RunFolder(tmp_path / "run", False, cfg(), 4, genome)
    assert other_rank.open(model, optimizer, resume=False) == (0, [])
    other_rank.save(model, optimizer, [{"epoch": 1}])
    other_rank.finish({"val_acc": 0.5})
    assert not (tmp_path / "run").exists()


def test_epochs_are_a_function_of_seed_and_epoch_and_ranks_split_them(synth):
    config = cfg(train_subset=100, batch_size=16)
    data = Epochs(synth, config, CPU, World())
    assert len(data) == 100 and data.steps == 100 // 16

    def labels(d, epoch):
        return torch.cat([y for _, y in d.batches(epoch)])

    first = [x for x, _ in data.batches(0)]
    assert torch.equal(torch.cat(first), torch.cat([x for x, _ in data.batches(0)]))
    assert first[0].dtype == torch.float32 and first[0].shape[0] == 16
    assert not torch.equal(torch.cat(first), torch.cat([x for x, _ in data.batches(1)]))
    # two ranks see disjoint halves of the same epoch, in batches of batch_size / 2
    ranks = [Epochs(synth, config, CPU, World(r, 2)) for r in (0, 1)]
    assert ranks[0].per_rank == 8 and ranks[0].steps == 100 // 2 // 8
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    subset = synth.train.subset(100, seed=0)
    for r, d in enumerate(ranks):
        expected = subset.labels[order[r::2][: d.steps * d.per_rank]]
        assert torch.equal(labels(d, 0), expected)
    with pytest.raises(ArchsearchError, match="too few"):
        Epochs(synth, cfg(train_subset=1), CPU, World(0, 2))


def test_the_step_lowers_the_loss_on_a_real_batch(synth, bound):
    _, model = small(bound)
    config = cfg(weight_decay=0.0)
    optimizer = sgd(model, config)
    calls = []

    def regularizer(m):  # runs between backward and step: the gradients are there
        calls.append(all(p.grad is not None for p in m.parameters() if p.requires_grad))

    step = Step(model, optimizer, config, CPU, resolve_precision("off", CPU), World(),
                regularizer)
    step.begin_epoch(0.05)
    assert model.training and optimizer.param_groups[0]["lr"] == 0.05
    x, y = next(Epochs(synth, cfg(augment=False), CPU, World()).batches(0))
    losses = []
    tally = Tally(CPU)
    for _ in range(15):
        loss, out = step(x, y)
        losses.append(float(loss))
        tally.add(loss, out, y)
    step.close()
    assert calls == [True] * 15
    assert losses[-1] < 0.5 * losses[0]
    mean, acc, seen = tally.totals(World())
    assert seen == 15 * len(y) and mean == pytest.approx(sum(losses) / 15, rel=1e-5)
    assert 0 < acc <= 1


def test_under_a_grad_scaler_the_regularizer_sees_unscaled_gradients():
    """fp16's GradScaler path (CUDA in training; its CPU twin here): the step unscales
    before the regularizer, so an L1 penalty or a gate's gradient is at its true size."""
    from torch import nn

    from archsearch.train._device import Precision

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))

    x, y = torch.randn(32, 12, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3
    config = TrainConfig(lr=0.1, channels_last=False, weight_decay=0.0)
    grads = {}
    for scaled in (False, True):
        m = model()
        seen = []
        step = Step(m, sgd(m, config), config, CPU, Precision(torch.float16 if scaled else None,
                                                               scaled), World(),
                    lambda mm, seen=seen: seen.append(mm[1].weight.grad.abs().max().item()))
        step.begin_epoch(0.1)
        losses = [float(step(x, y)[0]) for _ in range(30)]
        assert (step.scaler is not None) == scaled and losses[-1] < 0.5 * losses[0]
        grads[scaled] = seen[0]
    assert grads[True] == pytest.approx(grads[False], rel=0.05)  # not 65536 times larger
