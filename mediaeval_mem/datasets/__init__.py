"""Datasets: find a copy on disk (Memento10k, VideoMem, or one declared by name), whatever its layout, and read its splits."""

from mediaeval_mem.datasets.catalog import DATASETS, open_dataset
from mediaeval_mem.datasets.records import SPLITS, DatasetIndex, Problem, VideoItem

__all__ = ["DATASETS", "SPLITS", "DatasetIndex", "Problem", "VideoItem", "open_dataset"]
