"""Datasets: shapes known by name (always), and loaders for the files (when present)."""

from __future__ import annotations

from archsearch.data._info import DATASETS, DatasetInfo, Files, dataset_info
from archsearch.data._loaders import ImageSet, Splits, load_data

__all__ = ["DATASETS", "DatasetInfo", "Files", "ImageSet", "Splits", "dataset_info",
           "load_data"]
