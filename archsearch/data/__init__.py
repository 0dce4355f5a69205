"""Datasets: known by name (shapes always, files when present) or opened from an image
folder or a dataset file; loaders for the files."""

from __future__ import annotations

from archsearch.data._describe import FOLDER_HELP, describe, known_datasets
from archsearch.data._folder import FolderSet
from archsearch.data._info import DATASETS, DatasetInfo, Files
from archsearch.data._loaders import ImageSet, Splits, load_data
from archsearch.data._open import DATASET_FILE, dataset_info, open_dataset

__all__ = ["DATASETS", "DATASET_FILE", "FOLDER_HELP", "DatasetInfo", "Files", "FolderSet",
           "ImageSet", "Splits", "dataset_info", "describe", "known_datasets", "load_data",
           "open_dataset"]
