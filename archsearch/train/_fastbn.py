"""BatchNorm for narrow channels_last layers on CPU, as a few wide passes over memory.

torch's CPU BatchNorm kernel vectorises a channels_last tensor over its channels: with 6 of
them an AVX-512 register is a third full, and a 12.5%-width genome spends a third of its
step in BatchNorm (bench/results/throughput_cifar10_profile.md). Here the (N·H·W, C) rows of
the same memory are read as (N·H·W/k, k·C) rows, k copies of the channels side by side, so
every pass is over at least `WIDE` contiguous columns; the k partial statistics are then
combined exactly (equal counts). Statistics, normalisation and gradients are computed in
fp32 whatever the input's dtype, as torch's mixed-precision kernel does; the output has the
input's dtype, and the running statistics follow `nn.BatchNorm2d`'s update to the letter.

`install(model)` points each narrow `nn.BatchNorm2d`'s forward here (its parameters,
buffers and state_dict are untouched, so checkpoints are plain); eval mode, other layouts
and wide layers keep torch's kernel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

WIDE = 64  # columns per folded row: one AVX-512 register of fp32, four times over
NARROW = 16  # fewer channels than this: the folded path pays (measured, see the module doc)


def fold(channels: int, rows: int) -> int:
    """k: copies of the channels per folded row, a power of two with k·C >= WIDE that
    divides the `rows` (N·H·W) of the tensor (1: no folding possible)."""
    k = 1
    while k * channels < WIDE:
        k *= 2
    while rows % k:
        k //= 2
    return k


def _rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """The channels_last memory of x as (N·H·W/k, k·C) rows: a view, no copy."""
    return x.permute(0, 2, 3, 1).reshape(-1, k * x.shape[1])


class _FoldedBatchNorm(torch.autograd.Function):
    """Every pass is fp32 against fp32 (torch's mixed bf16/fp32 elementwise ops are not
    vectorised: 40x slower); a bf16 input is cast once each way."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        rows = _rows(x, k).float()
        mean = rows.sum(0).view(k, c).sum(0) / (rows.shape[0] * k)
        centred = rows - mean.repeat(k)
        var = centred.square().sum(0).view(k, c).sum(0) / (rows.shape[0] * k)
        invstd = torch.rsqrt(var + eps)
        scale = (weight * invstd).repeat(k)
        y = torch.empty_like(x, memory_format=torch.channels_last)
        _rows(y, k).copy_(torch.addcmul(bias.repeat(k), centred, scale))
        ctx.save_for_backward(centred, weight, invstd)
        ctx.k, ctx.shape, ctx.dtype = k, x.shape, x.dtype
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy: torch.Tensor, _dmean: torch.Tensor, _dvar: torch.Tensor
                 ) -> tuple[torch.Tensor | None, ...]:
        centred, weight, invstd = ctx.saved_tensors
        k, c = ctx.k, ctx.shape[1]
        n = centred.numel() // c
        drows = _rows(dy.contiguous(memory_format=torch.channels_last), k).float()
        sum_dy = drows.sum(0).view(k, c).sum(0)
        sum_dyc = (drows * centred).sum(0).view(k, c).sum(0)
        dx = None
        if ctx.needs_input_grad[0]:
            a = weight * invstd
            b = -a * invstd.square() * sum_dyc / n
            dx = torch.empty(ctx.shape, dtype=ctx.dtype, device=dy.device,
                             memory_format=torch.channels_last)
            part = torch.addcmul((-a * sum_dy / n).repeat(k), drows, a.repeat(k))
            _rows(dx, k).copy_(part.addcmul_(centred, b.repeat(k)))
        return dx, sum_dyc * invstd, sum_dy, None, None


def folded_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """`bn(x)` in training mode through the folded kernel, running statistics updated as
    `nn.BatchNorm2d.forward` updates them."""
    c = x.shape[1]
    k = fold(c, x.numel() // c)
    weight = bn.weight if bn.weight is not None else torch.ones(c, device=x.device)
    bias = bn.bias if bn.bias is not None else torch.zeros(c, device=x.device)
    y, mean, var = _FoldedBatchNorm.apply(x, weight, bias, bn.eps, k)
    if bn.track_running_stats and bn.running_mean is not None:
        assert bn.running_var is not None and bn.num_batches_tracked is not None
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                      else bn.momentum)
            n = x.numel() // c
            bn.running_mean.lerp_(mean, factor)
            bn.running_var.lerp_(var * (n / max(n - 1, 1)), factor)
    return y


def _fast_forward(bn: nn.BatchNorm2d) -> Callable[[torch.Tensor], torch.Tensor]:
    plain = nn.BatchNorm2d.forward.__get__(bn)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if bn.training and x.dim() == 4 and x.device.type == "cpu" and x.numel() > 0 and \
                x.is_contiguous(memory_format=torch.channels_last) and \
                not x.is_contiguous() and x.shape[0] * x.shape[2] * x.shape[3] > 1:
            return folded_batch_norm(bn, x)
        return plain(x)
    return forward


def install(model: nn.Module, narrow: int = NARROW) -> list[nn.Module]:
    """Route every `nn.BatchNorm2d` of `model` with fewer than `narrow` channels through the
    folded kernel in training; returns the layers changed (give them to `uninstall`)."""
    changed = []
    for module in model.modules():
        if type(module) is nn.BatchNorm2d and module.num_features < narrow:
            module.forward = _fast_forward(module)  # an instance attribute: no state added
            changed.append(module)
    return changed


def uninstall(layers: list[nn.Module]) -> None:
    for module in layers:
        if "forward" in vars(module):
            del module.forward
