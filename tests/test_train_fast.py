"""The engine's fast path (`TrainConfig.fast`) against its plain path on real tiny models:
the folded BatchNorm kernel equals torch's, training tracks the plain path step for step in
fp32 and statistically in bf16, resume after SIGKILL is bit-identical, and a fast run's
checkpoint is a plain model's."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.genome import Genome
from archsearch.train import TrainConfig, load_checkpoint, seed_everything, train
from archsearch.train._device import Precision
from archsearch.train._dist import World
from archsearch.train._fastbn import fold, folded_batch_norm, install, uninstall
from archsearch.train._step import Step, sgd
from tests.conftest import assert_resumed_equals_uninterrupted, kill_after_first_checkpoint

SPACE = "resnet20"


def small(bound, seed=0, budget="12.5%FLOPs"):
    genome = bound.uniform(parse_budget(budget))
    seed_everything(seed)
    return genome, bound.build(genome)


def cfg(**kw):
    base = dict(epochs=3, batch_size=32, lr=0.05, seed=0, eval_split="val", device="cpu")
    return TrainConfig(**(base | kw))


def test_fold_divides_the_rows_and_fills_a_register():
    assert fold(6, 8 * 32 * 32) * 6 >= 64 and (8 * 32 * 32) % fold(6, 8 * 32 * 32) == 0
    assert fold(6, 3) == 1  # odd rows: no folding, still correct
    assert fold(64, 1024) == 1


@pytest.mark.parametrize("shape", [(8, 6, 12, 12), (3, 5, 7, 7), (4, 11, 4, 4), (3, 3, 3, 3)])
@pytest.mark.parametrize("momentum, affine", [(0.1, True), (None, True), (0.1, False)])
def test_folded_batchnorm_equals_torch(shape, momentum, affine):
    """Output, input/weight/bias gradients and running statistics, fp32: equal to torch's
    kernel up to float summation order (stated tolerance: 1e-5 relative)."""
    torch.manual_seed(0)
    c = shape[1]
    ref = nn.BatchNorm2d(c, momentum=momentum, affine=affine)
    if affine:
        ref.weight.data.uniform_(0.5, 1.5)
        ref.bias.data.normal_()
    fast = copy.deepcopy(ref)
    x = (torch.randn(shape) * 3 + 2).contiguous(memory_format=torch.channels_last)
    g = torch.randn(shape)  # an NCHW upstream gradient: the kernel must re-lay it out
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    for _ in range(2):  # twice: the running statistics' update compounds
        y_ref, y_fast = ref(xs[0]), folded_batch_norm(fast, xs[1])
        y_ref.backward(g)
        y_fast.backward(g)
    assert y_fast.is_contiguous(memory_format=torch.channels_last)
    assert y_fast.dtype == x.dtype

    def close(a, b):
        return torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.detach().abs().max()) + 1e-7)

    assert close(y_fast, y_ref) and close(xs[1].grad, xs[0].grad)
    assert close(fast.running_mean, ref.running_mean)
    assert close(fast.running_var, ref.running_var)
    assert int(fast.num_batches_tracked) == int(ref.num_batches_tracked) == 2
    if affine:
        assert close(fast.weight.grad, ref.weight.grad) and close(fast.bias.grad, ref.bias.grad)


def test_folded_batchnorm_bf16_keeps_the_dtype_and_the_statistics():
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(6)
    fast = copy.deepcopy(ref)
    x = torch.randn(16, 6, 8, 8).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    y_ref, y_fast = ref(x), folded_batch_norm(fast, x)
    assert y_fast.dtype == torch.bfloat16
    assert (y_fast.float() - y_ref.float()).abs().max() < 0.05  # a bf16 rounding step
    assert torch.allclose(fast.running_var, ref.running_var, rtol=1e-4)


def test_install_touches_only_narrow_batchnorms_and_uninstall_restores(bound):
    _, model = small(bound)
    before = copy.deepcopy(model.state_dict())
    layers = install(model)
    narrow = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)
              and m.num_features < 16]
    assert layers == narrow and layers
    assert model.state_dict().keys() == before.keys()
    uninstall(layers)
    assert not any("forward" in vars(m) for m in model.modules())


def _steps(bound, synth, fast: bool, precision: Precision, steps: int = 12) -> list[float]:
    """Losses of `steps` optimizer steps on the same batches (drawn from 64 images, so
    that the loss visibly falls) from the same initial weights."""
    _, model = small(bound)
    model.to(memory_format=torch.channels_last)
    config = cfg(fast=fast)
    step = Step(model, sgd(model, config), config, torch.device("cpu"), precision, World())
    step.begin_epoch(config.base_lr)
    gen = torch.Generator().manual_seed(0)
    mean = torch.tensor(synth.mean).view(1, -1, 1, 1)
    std = torch.tensor(synth.std).view(1, -1, 1, 1)
    losses = []
    try:
        for _ in range(steps):
            sel = torch.randint(0, 64, (32,), generator=gen)
            x = ((synth.train.images[sel].float() / 255 - mean) / std).contiguous(
                memory_format=torch.channels_last)
            loss, _ = step(x, synth.train.labels[sel])
            losses.append(float(loss))
    finally:
        step.close()
    return losses


def test_fast_path_tracks_the_plain_path_step_for_step_in_fp32(bound, synth):
    """fp32: the two paths differ only in the order of float sums, so their losses agree
    to 1e-4 relative over the first 4 SGD steps (lr 0.05, momentum 0.9), 1e-3 over 8 and
    2e-3 over all 12 (rounding differences grow step by step, as between any two summation
    orders: step 8 differed by 1.06e-4 relative in one run of the suite, by less in others)."""
    fp32 = Precision(None, False)
    plain, fast = _steps(bound, synth, False, fp32), _steps(bound, synth, True, fp32)
    assert plain[0] == pytest.approx(fast[0], rel=1e-6)  # same forward, same weights
    assert fast[:4] == pytest.approx(plain[:4], rel=1e-4)
    assert fast[:8] == pytest.approx(plain[:8], rel=1e-3)
    assert fast == pytest.approx(plain, rel=2e-3)
    assert sum(plain[-4:]) / 4 < plain[0] - 0.05  # it learns: no agreement of idle runs


@pytest.mark.slow
def test_fast_path_in_bf16_trains_like_the_plain_path(synth):
    """bf16: the same accuracy statistics on a short run (vgg11 at 5%: narrow layers;
    3 seeds each, means within 0.1)."""
    vgg = bind("vgg11", "synthetic")
    got = {}
    for fast in (False, True):
        accs = []
        for seed in range(3):
            _, model = small(vgg, seed, "5%FLOPs")
            layers = install(model)  # narrow BatchNorms: the folded kernel is exercised
            assert layers
            uninstall(layers)
            r = train(model, synth, cfg(epochs=4, amp="bf16", fast=fast, seed=seed),
                      progress=False)
            assert r.precision == "bf16"
            accs.append(r.val_acc)
        got[fast] = sum(accs) / 3
    assert got[False] > 0.5 and got[True] > 0.5  # both learn (10 classes: chance 0.1)
    assert abs(got[True] - got[False]) < 0.1


def test_fast_checkpoint_loads_as_a_plain_model(bound, synth, tmp_path):
    genome, model = small(bound)
    result = train(model, synth, cfg(epochs=1), run_dir=tmp_path, genome=genome,
                   progress=False)
    assert not any("forward" in vars(m) for m in model.modules())  # the engine cleaned up
    doc = load_checkpoint(tmp_path / "checkpoint.pt")
    plain = bound.build(Genome.from_dict(doc["genome"]))
    plain.load_state_dict(doc["state_dict"], strict=True)
    plain.eval()
    model.eval()
    x = synth.val.images[:16].float() / 255
    with torch.no_grad():
        assert torch.allclose(plain(x), model.cpu().float()(x), atol=1e-5)
    assert result.history[-1]["epoch"] == 1


@pytest.mark.slow
def test_sigkill_then_resume_on_the_fast_path_is_bit_identical(bound, tmp_path):
    """A real process, killed after its first checkpoint (in epoch 2 of 4, at an injected
    point), resumed: the same weights and accuracy as an uninterrupted fast run."""
    path = tmp_path / "genome.json"
    bound.uniform(parse_budget("12.5%FLOPs")).save(path)
    args = ["train", str(path), "--dataset", "synthetic", "--epochs", "4", "--subset", "640",
            "--batch-size", "32", "--seed", "1", "--device", "cpu", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "archsearch", *args]
    ref = subprocess.run([*cmd, "--out", str(tmp_path / "ref")], capture_output=True,
                         text=True, env=env, timeout=600)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    kill_after_first_checkpoint([*args, "--out", str(out)], tmp_path / "epoch-1-saved", env)
    ckpt = out / "checkpoint.pt"
    assert load_checkpoint(ckpt)["epoch"] == 1
    resumed = subprocess.run([*cmd, "--out", str(out), "--resume"], capture_output=True,
                             text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert_resumed_equals_uninterrupted(ref.stdout, resumed.stdout, tmp_path / "ref", out, 4)
    assert load_checkpoint(ckpt)["config"]["fast"] is True


def test_plain_path_is_untouched_and_the_cli_switches_it(bound):
    _, model = small(bound)
    model.to(memory_format=torch.channels_last)
    for fast in (False, True):
        config = cfg(fast=fast)
        opt = sgd(model, config)
        step = Step(model, opt, config, torch.device("cpu"), Precision(None, False), World())
        folded = any("forward" in vars(m) for m in model.modules())
        step.close()
        assert folded is fast and opt.param_groups[0]["foreach"] is (True if fast else None)
    from archsearch.cli.main import build_parser

    parser = build_parser()
    genome = "g.json"
    assert parser.parse_args(["train", genome]).fast is True
    assert parser.parse_args(["train", genome, "--no-fast"]).fast is False
