"""A training-free evaluator: NASWOT (Mellor et al., "Neural Architecture Search without
Training", ICML 2021).

The genome's network is built at its random initialisation (seeded) and one batch of
training images goes through it. At every ReLU each image leaves a binary code (which units
are active); two images whose codes differ in few units are hard to tell apart for the
network. The score is log |det K| of the kernel K[i, j] = units where the codes of images i
and j agree (N_A minus their Hamming distance), summed over the ReLUs: high when the
untrained network already maps the images to distinct activation patterns.

Nothing is trained and no validation image is used: a score costs one forward pass. Where a
model has no `nn.ReLU` module (a functional ReLU), the codes are read at the outputs of its
BatchNorm layers instead (a ReLU follows each of them in the shipped spaces).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from archsearch.build import BoundSpace
from archsearch.genome import Genome
from archsearch.search._evaluators import Scoring, _images, _normalise

_CODED = (nn.ReLU, nn.ReLU6)


def coded_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs give the binary codes: the ReLUs, else the BatchNorms."""
    relus = [m for m in model.modules() if isinstance(m, _CODED)]
    return relus or [m for m in model.modules()
                     if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def naswot_score(model: nn.Module, images: torch.Tensor) -> float:
    """log |det K| of the activation-code kernel of `model` on `images` (a normalised batch);
    the model runs in training mode (BatchNorm on the batch's statistics), as at init."""
    n = images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=images.device)

    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        codes = (out.detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.T).add_((1 - codes) @ (1 - codes).T)

    handles = [m.register_forward_hook(hook) for m in coded_modules(model)]
    try:
        model.train()(images)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


class NaswotEvaluator:
    """The genome at its seeded random init, scored by `naswot_score` on `calib_images`
    training images (a seeded subset, the same for every genome)."""

    name = "naswot"

    def __init__(self, bound: BoundSpace, splits: Any, scoring: Scoring) -> None:
        from archsearch.train import resolve_device

        self.bound, self.scoring = bound, scoring
        self.device = resolve_device(scoring.device)
        images, _ = _images(splits.train, scoring.calib_images, scoring.seed)
        self.images = _normalise(images, splits, self.device)

    def __call__(self, genome: Genome, report: Callable[[int, float], None] | None) -> float:
        torch.manual_seed(self.scoring.seed)  # the same init draw for every genome
        model = self.bound.build(genome).to(self.device).float()
        return naswot_score(model, self.images)
