"""The training engine on real (tiny) computations: schedules, hook order, checkpoints,
exact resume, divergence."""

from __future__ import annotations

import json

import optuna
import pytest
import torch

from archsearch.budget import parse_budget
from archsearch.errors import ArchsearchError, DivergenceError
from archsearch.train import (
    TrainConfig,
    evaluate,
    load_checkpoint,
    resolve_epochs,
    scratch_b_epochs,
    seed_everything,
    train,
)


def small(bound, budget="5%FLOPs", seed=0):
    genome = bound.uniform(parse_budget(budget))
    seed_everything(seed)
    return genome, bound.build(genome)


def cfg(**kw):
    base = dict(epochs=3, batch_size=32, lr=0.05, seed=0, eval_split="val")
    return TrainConfig(**(base | kw))


def test_scratch_b_epochs_match_the_paper():
    assert scratch_b_epochs(160, 1e8, 5e7) == 320
    assert scratch_b_epochs(160, 1e8, 1e8) == 160
    assert scratch_b_epochs(160, 1e8, 2.5e7, max_scale=2) == 320
    c = TrainConfig(schedule="scratch-b", epochs=160)
    assert resolve_epochs(c, 127_931_072, 127_931_072 / 2) == 320
    assert resolve_epochs(TrainConfig(schedule="scratch-e", epochs=160), 1e8, 1e7) == 160
    with pytest.raises(ArchsearchError):
        resolve_epochs(c)


def test_lr_schedules():
    c = TrainConfig(schedule="scratch-e", epochs=160)
    assert [c.lr_at(e, 160) for e in (0, 79, 80, 119, 120, 159)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    f = TrainConfig(schedule="finetune", epochs=40)
    assert {f.lr_at(e, 40) for e in range(40)} == {1e-3}


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(schedule="fast"), dict(lr=-1.0),
                                dict(amp="fp8"), dict(train_subset=1.5),
                                dict(max_scale=0.5), dict(eval_split="train")])
def test_bad_config_is_a_clear_error(kw):
    with pytest.raises(ArchsearchError):
        TrainConfig(**kw)


def test_training_learns_and_writes_the_run_folder(synth, bound, tmp_path):
    genome, model = small(bound)
    before = evaluate(model, synth.val, synth)
    result = train(model, synth, cfg(epochs=4), genome=genome, run_dir=tmp_path,
                   progress=False)
    assert result.val_acc > max(0.5, before + 0.2)
    assert result.test_acc is None  # a val-split run never looks at the test split
    assert result.history[0]["train_loss"] > result.history[-1]["train_loss"]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only
    assert ckpt["epoch"] == 4 and ckpt["genome"]["space"] == "vgg11"
    assert set(ckpt["state_dict"]) == set(model.state_dict())
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["val_acc"] == pytest.approx(result.val_acc) and res["macs"] > 0


def test_regularizer_runs_between_backward_and_step(synth, bound):
    _, model = small(bound)
    start = {k: p.detach().clone() for k, p in model.named_parameters()}
    seen = []

    def drop_grads(m):
        seen.append(all(p.grad is not None for p in m.parameters()))
        for p in m.parameters():
            p.grad = None  # as sss does for its gates

    train(model, synth, cfg(epochs=1, weight_decay=0.0), regularizer=drop_grads,
          progress=False)
    assert seen and all(seen)  # backward had run
    for k, v in model.named_parameters():  # the step saw no gradient: nothing moved
        if k in start:
            assert torch.equal(v, start[k]), k


def test_on_epoch_exceptions_propagate(synth, bound):
    _, model = small(bound)

    def stop(record):
        if record["epoch"] == 2:
            raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        train(model, synth, cfg(), on_epoch=stop, progress=False)


def test_resume_is_exact(synth, bound, tmp_path):
    genome, model = small(bound)
    full = train(model, synth, cfg(epochs=4), progress=False)

    genome, model = small(bound)

    def crash(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, synth, cfg(epochs=4), run_dir=tmp_path, genome=genome, on_epoch=crash,
              progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2
    with pytest.raises(ArchsearchError, match="--resume"):
        train(model, synth, cfg(epochs=4), run_dir=tmp_path, progress=False)
    with pytest.raises(ArchsearchError, match="different settings"):
        train(model, synth, cfg(epochs=4, lr=0.1), run_dir=tmp_path, resume=True,
              progress=False)
    _, fresh = small(bound, seed=123)  # other init: the checkpoint must overwrite it
    resumed = train(fresh, synth, cfg(epochs=4), run_dir=tmp_path, resume=True,
                    progress=False)
    assert resumed.val_acc == full.val_acc
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]


def test_divergence_stops_and_keeps_the_last_good_checkpoint(synth, bound, tmp_path):
    genome, model = small(bound)
    calls = []
    steps_per_epoch = int(len(synth.train) // 32)

    def poison(m):
        calls.append(1)
        if len(calls) > steps_per_epoch:  # epoch 2: a NaN gradient
            next(m.parameters()).grad.fill_(float("nan"))

    with pytest.raises(DivergenceError, match="epoch 2.*checkpoint"):
        train(model, synth, cfg(), run_dir=tmp_path, genome=genome, regularizer=poison,
              progress=False)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values()
               if v.is_floating_point())


def test_onednn_1x1_strided_nhwc_guard():
    """oneDNN#6035: NHWC 1×1 stride-2 conv with 4-7 input channels gets a wrong weight
    gradient on 2 threads (a heap corruption on 1). The engine's guard must give the NCHW
    gradient; a narrow resnet's projection shortcut is exactly this conv."""
    from archsearch.train._device import onednn_1x1_guard

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the wrong-result regime, not the crashing one
    try:
        torch.manual_seed(0)
        ref = torch.nn.Conv2d(5, 10, 1, 2, bias=False)
        x = torch.randn(16, 5, 28, 28)
        ref(x).square().sum().backward()
        conv = torch.nn.Conv2d(5, 10, 1, 2, bias=False)
        conv.load_state_dict(ref.state_dict())
        conv = conv.to(memory_format=torch.channels_last)
        handles = onednn_1x1_guard(conv, torch.device("cpu"), channels_last=True)
        assert len(handles) == 1
        conv(x.contiguous(memory_format=torch.channels_last)).square().sum().backward()
        err = (conv.weight.grad - ref.weight.grad).abs().max() / ref.weight.grad.abs().max()
        assert err < 1e-4
    finally:
        torch.set_num_threads(threads)


def _junk_heap(numel: int) -> None:
    """Leave freed NaN-filled blocks of `numel` floats in the heap, where the allocator hands
    the next buffers of that size from: an unwritten gradient then shows as NaN."""
    junk = [torch.full((numel,), float("nan")) for _ in range(8)]
    del junk


@pytest.mark.parametrize("hw,stride,kernel", [((1, 1), 2, 3), ((4, 1), 2, 3), ((2, 2), 3, 5)])
def test_bf16_strided_conv_narrower_than_its_stride_gets_the_true_weight_gradient(
        hw, stride, kernel):
    """oneDNN's bf16 weight gradient of a strided conv on an input narrower than the stride
    leaves the padding-only taps unwritten (NaN or garbage: it diverged timm's resnet10t in
    one step). Under the guard it is the fp64 gradient to bf16 accuracy."""
    from archsearch.train._device import Precision, onednn_bf16_strided_guard

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 32, kernel, stride, kernel // 2, bias=False)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(8, 16, *hw).contiguous(memory_format=torch.channels_last)
    overrides = onednn_bf16_strided_guard(conv, torch.device("cpu"),
                                          Precision(torch.bfloat16, False))
    assert len(overrides) == 1
    for _ in range(3):
        conv.weight.grad = None
        _junk_heap(conv.weight.numel())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        g = torch.randn(y.shape)
        (y.float() * g).sum().backward()
        ref = torch.nn.grad.conv2d_weight(x.double(), conv.weight.shape, g.double(), stride,
                                          kernel // 2)
        err = (conv.weight.grad.double() - ref).abs().max() / ref.abs().max()
        assert err < 1e-5  # fp32: this conv ran unconverted
    overrides[0].remove()
    assert "forward" not in vars(conv)


def test_bf16_strided_guard_leaves_wide_inputs_and_other_precisions_alone():
    from archsearch.train._device import Precision, onednn_bf16_strided_guard

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.Conv2d(8, 8, 3, 1, 1),
                              torch.nn.Conv2d(8, 8, 1, 2))
    cpu, bf16 = torch.device("cpu"), Precision(torch.bfloat16, False)
    assert onednn_bf16_strided_guard(net, cpu, Precision(None, False)) == []
    overrides = onednn_bf16_strided_guard(net, cpu, bf16)
    assert [o.module for o in overrides] == [net[0]]  # stride 1 and 1×1 kernels: correct
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net[0](torch.randn(2, 3, 8, 8)).dtype == torch.bfloat16  # wide: bf16 kept
        assert net[0](torch.randn(2, 3, 1, 1)).dtype == torch.float32
        with torch.no_grad():  # no weight gradient, nothing to guard
            assert net[0](torch.randn(2, 3, 1, 1)).dtype == torch.bfloat16
    for o in overrides:
        o.remove()
    assert "forward" not in vars(net[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # removed: the plain conv again
        assert net[0](torch.randn(2, 3, 1, 1)).dtype == torch.bfloat16


def test_a_deepcopy_of_a_guarded_model_runs_its_own_weights():
    """The guard binds its forward to the module, so a copy taken mid-training (an average,
    a cost count) computes with the copy's weights, not the original's."""
    import copy

    from archsearch.train._device import Precision, onednn_bf16_strided_guard

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1))
    overrides = onednn_bf16_strided_guard(net, torch.device("cpu"),
                                          Precision(torch.bfloat16, False))
    clone = copy.deepcopy(net)
    with torch.no_grad():
        clone[0].weight.zero_()
        clone[0].bias.zero_()
    x = torch.randn(1, 3, 1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert clone(x).abs().max() == 0 and net(x).abs().max() > 0
    for o in overrides:
        o.remove()
