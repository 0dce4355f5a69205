"""Model families. Family code only builds *base* models; nothing else is family-specific."""

from __future__ import annotations

from archsearch.models._cifar import init_weights
from archsearch.models._external import load_builder
from archsearch.models._registry import FAMILIES, Family, build_family, family_args

__all__ = ["FAMILIES", "Family", "build_family", "family_args", "init_weights", "load_builder"]
