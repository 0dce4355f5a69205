"""BatchNorm for narrow channels_last layers on CPU, through torch's kernels on wide rows.

torch's CPU BatchNorm kernel vectorises a channels_last tensor over its channels: with 6 of
them an AVX-512 register is a third full, and a 12.5%-width genome spends a third of its
step in BatchNorm (bench/results/throughput_cifar10_profile.md). Here the (N·H·W, C) rows of
the same memory are read as (N·H·W/k, k·C) rows, k copies of the channels side by side, so
every pass is over at least `WIDE` contiguous columns; the k partial statistics are then
combined exactly (equal counts). Statistics, normalisation and gradients are computed in
fp32 whatever the input's dtype (torch's mixed-precision kernels with fp32 parameters); the
output has the input's dtype, and the running statistics follow `nn.BatchNorm2d`'s update
to the letter. Measured forward + backward, bf16, batch 128, 1 thread, CPU time: 6 channels
at 32×32 2.5 ms against torch's 6.1 ms, 11 at 16×16 1.6 against 1.9, 14 at 16×16 1.6
against 2.3; from 16 channels on torch's kernel is as fast or faster (NARROW).

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


def _back(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N·H·W/k, k·C) rows back to `like`'s (N, C, H, W) shape, channels_last: a view."""
    n, c, h, w = like.shape
    return rows.view(n, h, w, c).permute(0, 3, 1, 2)


def _affine(rows: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, k: int
            ) -> torch.Tensor:
    """rows · scale + shift per channel, in one vectorised pass of torch's (eval-mode)
    BatchNorm kernel: fp32 arithmetic, the rows' dtype out."""
    ones = torch.ones_like(scale).repeat(k)
    return torch.batch_norm(rows, scale.repeat(k), shift.repeat(k), torch.zeros_like(ones),
                            ones, False, 0.0, 0.0, False)


class _FoldedBatchNorm(torch.autograd.Function):
    """torch's own BatchNorm kernels on the folded rows, where they vectorise: a
    training-mode pass for each column's statistics (combined per channel here), then
    eval-mode passes with the channel's statistics repeated per column, forward and
    backward (whose per-column sums are the weight and bias gradients' parts)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        rows = _rows(x, k)
        ones = torch.ones(k * c, device=x.device)  # fp32 parameters: fp32 statistics
        _, mean_col, invstd_col = torch.native_batch_norm(rows, ones, torch.zeros_like(ones),
                                                          None, None, True, 0.0, eps)
        mean_k = mean_col.view(k, c)
        var_k = invstd_col.view(k, c).pow(-2) - eps
        mean = mean_k.mean(0)
        var = (var_k + (mean_k - mean).square()).mean(0)
        invstd = torch.rsqrt(var + eps)
        y = torch.empty_like(x, memory_format=torch.channels_last)  # returned: not a view
        empty = torch.empty(0, device=x.device)
        torch.ops.aten.native_batch_norm.out(
            rows, weight.repeat(k), bias.repeat(k), mean.repeat(k), var.repeat(k), False, 0.0,
            eps, out=_rows(y, k), save_mean=empty, save_invstd=empty.clone())
        ctx.save_for_backward(x, weight, mean, var, invstd)
        ctx.k, ctx.eps = k, eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy: torch.Tensor, _dmean: torch.Tensor, _dvar: torch.Tensor
                 ) -> tuple[torch.Tensor | None, ...]:
        x, weight, mean, var, invstd = ctx.saved_tensors
        k, c = ctx.k, x.shape[1]
        n = x.numel() // c
        rows = _rows(x, k)
        drows = _rows(dy.contiguous(memory_format=torch.channels_last), k)
        need_dx = ctx.needs_input_grad[0]
        part, gw_col, gb_col = torch.ops.aten.native_batch_norm_backward(
            drows, rows, weight.repeat(k), mean.repeat(k), var.repeat(k), None, None, False,
            ctx.eps, [need_dx, True, True])
        sum_dy, sum_dyxhat = gb_col.view(k, c).sum(0), gw_col.view(k, c).sum(0)
        dx = None
        if need_dx:  # the batch-statistics terms: dx = part + x·c2 + c1
            a = weight * invstd
            c2 = -a * invstd * sum_dyxhat / n
            c1 = -a * sum_dy / n - c2 * mean
            dx = _back(part.add_(_affine(rows, c2, c1, k)), x)
        return dx, sum_dyxhat, sum_dy, None, None


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
