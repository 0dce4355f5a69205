"""Family name -> base-model constructor. Spaces (TOML files) name a family and its arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from archsearch.errors import ArchsearchError
from archsearch.models._cifar import VGG, PreResNet, ResNetCifar


def _torchvision(name: str, in_channels: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """A torchvision classification model (random init, no download); first conv adapted."""
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError as exc:
        raise ArchsearchError(f"unknown torchvision model {name!r}") from exc
    model = builder(weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    return model


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            new = nn.Conv2d(in_channels, module.out_channels, module.kernel_size, module.stride,
                            module.padding, module.dilation, module.groups,
                            module.bias is not None)
            model.set_submodule(name, new)
            return


FAMILIES: dict[str, Callable[..., nn.Module]] = {
    "vgg": lambda in_channels, num_classes, cfg: VGG(cfg, in_channels, num_classes),
    "resnet_cifar": lambda in_channels, num_classes, depth, widths=(16, 32, 64): ResNetCifar(
        depth, in_channels, num_classes, widths),
    "preresnet": lambda in_channels, num_classes, depth, widths=(16, 32, 64): PreResNet(
        depth, in_channels, num_classes, widths),
    "torchvision": _torchvision,
}


def build_family(family: str, in_channels: int, num_classes: int, **args: Any) -> nn.Module:
    if family not in FAMILIES:
        raise ArchsearchError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    try:
        return FAMILIES[family](in_channels=in_channels, num_classes=num_classes, **args)
    except TypeError as exc:
        raise ArchsearchError(f"bad arguments for model family {family!r}: {exc}") from exc
