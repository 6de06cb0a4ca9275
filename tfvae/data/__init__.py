"""Datasets for tfvae: TFDS names, local IDX folders and .npz files, as `tf.data` pipelines.

Offline first: an explicit `data_dir`, then data TFDS has already prepared,
then a known local copy (Debian's `dataset-fashion-mnist`), then a TFDS download.
"""

from tfvae.data.labels import keep_labels
from tfvae.data.loading import IMAGE_DATASETS, DatasetInfo, available_datasets, load_dataset
from tfvae.data.sources import DataUnavailable
from tfvae.data.splits import SplitError

__all__ = [
    "IMAGE_DATASETS",
    "DataUnavailable",
    "DatasetInfo",
    "SplitError",
    "available_datasets",
    "keep_labels",
    "load_dataset",
]
