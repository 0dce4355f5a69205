"""Model families. Family code only builds *base* models; nothing else is family-specific."""

from __future__ import annotations

from archsearch.models._cifar import init_weights
from archsearch.models._registry import FAMILIES, build_family

__all__ = ["FAMILIES", "build_family", "init_weights"]
