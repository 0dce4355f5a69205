"""The torchvision family: any classification builder of `torchvision.models`."""

from __future__ import annotations

from typing import Any

from torch import nn

from archsearch.errors import ArchsearchError


def build_torchvision(name: str, in_channels: int, num_classes: int, input_hw: int | None = None,
                      **kwargs: Any) -> nn.Module:
    """A torchvision classification model (random init, no download); first conv adapted.

    Sizes that a builder fixes follow the input size (ViT's `image_size`, MaxViT's
    `input_size`); GoogLeNet's and Inception's auxiliary heads are off unless asked for
    (inference never runs them, and the cost is that of inference)."""
    import warnings

    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError as exc:
        raise ArchsearchError(f"unknown torchvision model {name!r}") from exc
    if input_hw is not None and name.startswith("vit_"):
        kwargs.setdefault("image_size", input_hw)
    if input_hw is not None and name.startswith("maxvit"):
        kwargs.setdefault("input_size", (input_hw, input_hw))
    if name in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)
    with warnings.catch_warnings():  # googlenet/inception: "default init will change"
        warnings.simplefilter("ignore", FutureWarning)
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
