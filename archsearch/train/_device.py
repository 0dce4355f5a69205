"""Where and in which precision to compute: device, autocast, batched augmentation."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch

from archsearch.errors import ArchsearchError
from archsearch.train._config import check_amp


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ArchsearchError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArchsearchError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type not in ("cpu", "cuda"):
        raise ArchsearchError(f"device {name!r} is not supported: use cpu or cuda")
    return device


@cache
def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has native bf16 on this CPU (AVX512-BF16 or AMX); on plain AVX2,
    bf16 is emulated and slower than fp32, so autocast stays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and \
            torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX", "AVX512_BF16")
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    """The autocast dtype (None: fp32) and whether a GradScaler is needed (fp16)."""

    dtype: torch.dtype | None
    scaler: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_precision(mode: str, device: torch.device) -> Precision:
    """auto: bf16 on CPUs with native bf16, bf16 (else fp16 + scaler) on CUDA; BatchNorm
    parameters and statistics stay fp32 either way (autocast never casts parameters)."""
    check_amp(mode)  # "fp32" would otherwise fall through to auto
    if mode == "off":
        return Precision(None, False)
    if device.type == "cuda":
        if mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported()):
            return Precision(torch.float16, True)
        return Precision(torch.bfloat16, False)
    if mode == "fp16":
        raise ArchsearchError("fp16 autocast is for CUDA; on CPU use --amp bf16 or off")
    if mode == "bf16" or cpu_has_fast_bf16():
        return Precision(torch.bfloat16, False)
    return Precision(None, False)


class Augment:
    """Pad-crop and horizontal flip of a uint8 batch, as tensor ops on the batch's device,
    then normalisation to float; one random draw per image from `generator`."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], pad: int, flip: bool,
                 device: torch.device, channels_last: bool):
        m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * s), -m / s  # x/255 → (x/255 - m)/s
        self.pad, self.flip, self.channels_last = pad, flip, channels_last

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().mul_(self.scale).add_(self.shift)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.pad:
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, chan, rows, cols]
        if self.flip:
            mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        return self.normalise(x)


def onednn_1x1_guard(model: torch.nn.Module, device: torch.device,
                     channels_last: bool) -> list[torch.utils.hooks.RemovableHandle]:
    """Work around oneDNN's 1×1 strided convolution in NHWC with few input channels
    (uxlfoundation/oneDNN#6035, in torch 2.14.1's oneDNN): its weight gradient writes past a
    workspace, which corrupts the heap on one thread and gives wrong gradients on two
    (measured: 98% error for 5→10 channels, stride 2). Narrow genomes make such projection
    shortcuts common, so their inputs are fed NCHW (the blocked path is correct). Returns
    the hook handles (remove them after training)."""
    if device.type != "cpu" or not channels_last:
        return []
    handles = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (1, 1) and \
                max(module.stride) > 1 and module.in_channels < 16:
            # torch picks NHWC when either the input or the weight is channels_last
            module.weight.data = module.weight.data.clone(memory_format=torch.contiguous_format)
            handles.append(module.register_forward_pre_hook(_nchw_input))
    return handles


def _nchw_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def onednn_bf16_strided_guard(model: torch.nn.Module, device: torch.device,
                              precision: Precision) -> list[_ForwardOverride]:
    """Work around oneDNN's bf16 weight gradient of a strided convolution whose input is
    narrower than its stride (torch 2.14.1 on CPU, NHWC and NCHW alike): the taps that only
    ever meet padding are left unwritten, so the gradient holds whatever the buffer held
    before (measured: NaN, or 1e35 times the true gradient, in 123 of 576 shapes from 1×1
    to 12×12 inputs with strides 2-4 and 3×3 to 7×7 kernels; every one had an input
    width below the stride, none had stride 1, and fp32 was right in all). A resnet's
    strided 3×3 conv on a 1×1 map (a small input, late stages) is exactly this conv; it
    diverged a timm resnet10t in one step. Such a conv runs in fp32 while gradients are
    taken; its map is tiny, so the cost is too. Returns the overrides (remove them after
    training)."""
    if device.type != "cpu" or precision.dtype != torch.bfloat16:
        return []
    return [_ForwardOverride(module, _fp32_when_narrower_than_stride)
            for module in model.modules()
            if isinstance(module, torch.nn.Conv2d) and max(module.stride) > 1
            and max(module.kernel_size) > 1]


def narrower_than_stride(conv: torch.nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether `x` (N, C, H, W) is narrower or shorter than `conv`'s stride along an axis
    its kernel spans: the shapes oneDNN's bf16 weight gradient gets wrong (the measured
    cases were all in the width; the height is guarded too, at no cost)."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    return (x.shape[-1] < sw and kw > 1) or (x.shape[-2] < sh and kh > 1)


def _fp32_when_narrower_than_stride(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    plain = type(conv).forward
    if x.dim() == 4 and torch.is_grad_enabled() and narrower_than_stride(conv, x):
        with torch.autocast("cpu", enabled=False):
            return plain(conv, x.float())
    return plain(conv, x)


class _ForwardOverride:
    """`module.forward` replaced by `forward(module, x)`, bound to the module as an instance
    attribute (parameters, buffers and state_dict untouched; a deepcopy of the module binds
    the copy's); `remove()` restores the class's forward."""

    def __init__(self, module: torch.nn.Module, forward: Callable):
        self.module = module
        module.forward = types.MethodType(forward, module)

    def remove(self) -> None:
        if "forward" in vars(self.module):
            del self.module.forward


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_ALLOCATOR_TUNED: list[bool] = []


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of giving it back to the kernel, once per
    process: by default every large tensor a step frees is unmapped and the next step's
    first touch of its pages faults (measured: ~12,000 page faults per step of a 12.5%
    resnet20 at batch 128, ~10 with this). The process keeps its peak memory. False where
    the C library is not glibc (nothing changed)."""
    if _ALLOCATOR_TUNED:
        return _ALLOCATOR_TUNED[0]
    ok = False
    try:
        import ctypes
        import platform

        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL("libc.so.6")
            mmap = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1 or \
                libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1  # older glibc's ceiling
            ok = mmap and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1 and \
                libc.mallopt(_M_TOP_PAD, 64 << 20) == 1
    except (OSError, AttributeError):
        ok = False
    _ALLOCATOR_TUNED.append(ok)
    return ok
