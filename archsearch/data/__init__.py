"""Datasets: shapes known by name (always), and loaders for the files (when present)."""

from __future__ import annotations

from archsearch.data._info import DATASETS, DatasetInfo, dataset_info

__all__ = ["DATASETS", "DatasetInfo", "dataset_info"]
