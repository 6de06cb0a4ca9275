"""Where images come from: local IDX folders, .npz files, and TensorFlow Datasets.

Each source answers `load(split)` with numpy arrays (images uint8 (N, H, W, C),
labels (N,)), or raises `DataUnavailable` with a reason. Image datasets for a
VAE fit in memory, which is what lets the pipeline gather whole batches.
"""

import os
import pathlib
import zipfile

import numpy as np

from tfvae.data.idx import read_idx
from tfvae.data.splits import resolve_split
from tfvae.errors import TfvaeError

# Copies installed by operating-system packages (Debian's dataset-fashion-mnist).
KNOWN_LOCAL_COPIES = {
    "fashion_mnist": pathlib.Path("/usr/share/datasets/fashion-mnist"),
}

# The IDX files of each split, as MNIST and Fashion-MNIST name them.
IDX_PREFIXES = {"train": "train", "test": "t10k"}


class DataUnavailable(TfvaeError, RuntimeError):
    """No source could provide the requested dataset; the message says what was tried."""


def _check_counts(images, labels, where):
    if len(images) != len(labels):
        raise DataUnavailable(
            f"{where} holds {len(images)} images but {len(labels)} labels; every image needs one label. "
            "Fix or replace the label file (or remove it to train without labels)."
        )


def _integer_labels(labels, where):
    """`labels` as int64, checked: whole numbers, each a class (>= 0) or -1 (unknown)."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DataUnavailable(
                f"{where} holds labels that are not whole numbers (dtype {labels.dtype}); expected integer classes. "
                "Save them as integers, e.g. y.astype('int64')."
            )
    elif labels.dtype.kind not in "iub":
        raise DataUnavailable(f"{where} holds labels of dtype {labels.dtype}; expected integer classes.")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < -1:
        raise DataUnavailable(
            f"{where} holds the label {labels.min()}; expected classes 0, 1, ... and -1 for an unknown label."
        )
    return labels


def _with_channel_axis(images):
    return images[..., None] if images.ndim == 3 else images


def _find(folder, stem):
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    return None


class ArraySource:
    """Images and labels held as numpy arrays, one pair per split name."""

    def __init__(self, description, arrays):
        self.description = description
        self.arrays = arrays  # {split: (images (N, H, W, C) uint8, labels (N,))}

    def load(self, split):
        """(images, labels) of `split` in TFDS syntax ("train", "test[:8000]"), sliced from the arrays."""
        sizes = {name: len(images) for name, (images, _) in self.arrays.items()}
        parts = resolve_split(split, sizes)
        images = np.concatenate([self.arrays[name][0][start:stop] for name, start, stop in parts])
        labels = np.concatenate([self.arrays[name][1][start:stop] for name, start, stop in parts])
        return images, labels


def idx_source(folder):
    """An `ArraySource` over the IDX files in `folder`, or None if it holds none."""
    folder = pathlib.Path(folder)
    arrays = {}
    for split, prefix in IDX_PREFIXES.items():
        images_path = _find(folder, f"{prefix}-images-idx3-ubyte")
        if images_path is None:
            continue
        images = _with_channel_axis(read_idx(images_path))
        labels_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
        labels = read_idx(labels_path) if labels_path else np.full(len(images), -1, np.int64)
        where = f"The {split} split in {folder} ({images_path.name}, {labels_path and labels_path.name})"
        _check_counts(images, labels, where)
        arrays[split] = (images, _integer_labels(labels, where))
    return ArraySource(f"IDX files in {folder}", arrays) if arrays else None


def npz_source(path):
    """An `ArraySource` over a .npz file with `x_<split>` (and optional `y_<split>`) arrays."""
    if not zipfile.is_zipfile(path):
        raise DataUnavailable(
            f"{path} is not an .npz file (npz files are zip archives written by numpy.savez). "
            "Save the arrays with numpy.savez(path, x_train=..., x_test=...)."
        )
    with np.load(path, allow_pickle=False) as archive:
        arrays = {}
        for key in archive.files:
            if key.startswith("x_"):
                split = key[2:]
                images = _with_channel_axis(_numeric_array(archive, key, path))
                labels = _numeric_array(archive, f"y_{split}", path) if f"y_{split}" in archive.files else np.full(len(images), -1)
                where = f"The {split} split in {path} (x_{split}, y_{split})"
                _check_counts(images, labels, where)
                arrays[split] = (images, _integer_labels(labels, where))
    if not arrays:
        raise DataUnavailable(
            f"{path} holds no image arrays. Expected arrays named x_train, x_test, ... "
            "(and optionally y_train, y_test), as keras.datasets produces."
        )
    return ArraySource(f"the arrays in {path}", arrays)


def _numeric_array(archive, key, path):
    """The array `key` of an open .npz `archive`, or `DataUnavailable` if it holds Python objects (never unpickled)."""
    try:
        return archive[key]
    except ValueError:
        raise DataUnavailable(
            f"The array {key} in {path} holds Python objects (dtype object), which tfvae does not unpickle. Save it as "
            "a numeric array: images as uint8 (0-255) or float (0-1), labels as integers."
        ) from None


def local_source(path):
    """A source for an explicit path: a .npz file or a folder of IDX files, else None."""
    path = pathlib.Path(path)
    if path.is_file() and path.suffix == ".npz":
        return npz_source(path)
    if path.is_dir():
        return idx_source(path)
    return None


class TFDSSource:
    """A TensorFlow Datasets builder, used without downloading unless `download` is set."""

    def __init__(self, name, data_dir=None, download=False):
        self.name, self.data_dir, self.download = name, data_dir, download
        self.description = (
            f"a TFDS download of {name!r}" if download else f"TFDS data already prepared for {name!r}"
        ) + (f" in {data_dir}" if data_dir else "")

    def load(self, split):
        """(images, labels) of `split` from the prepared TFDS dataset, downloaded first only when `download` is set
        (`DataUnavailable` otherwise)."""
        import tensorflow_datasets as tfds

        root = pathlib.Path(self.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()
        if not self.download and not (root / self.name).is_dir():
            # Asked about a folder that is not there, TFDS logs a warning about it; nothing to read anyway.
            raise DataUnavailable(f"{self.name!r} is not prepared in {root}")
        builder = tfds.builder(self.name, data_dir=self.data_dir)
        if not builder.is_prepared():
            if not self.download:
                raise DataUnavailable(f"{self.name!r} is not prepared in {builder.data_dir}")
            builder.download_and_prepare()
        sizes = {name: info.num_examples for name, info in builder.info.splits.items()}
        resolve_split(split, sizes)  # the same split errors as local sources
        examples = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
        images = examples["image"]
        labels = examples.get("label", np.full(len(images), -1))
        return images, np.asarray(labels, np.int64)


def candidate_sources(name, data_dir=None, download=True):
    """The sources to try for `name`, offline first, in the documented order."""
    if data_dir is not None:
        if not os.path.exists(data_dir):
            raise DataUnavailable(
                f"The data directory {data_dir} does not exist. Point --data-dir at a folder of "
                "IDX files, a .npz file, or a TFDS data directory."
            )
        if os.path.isfile(data_dir) and not data_dir.endswith(".npz"):
            raise DataUnavailable(
                f"--data-dir {data_dir} is a file. Point it at the folder that holds the IDX files "
                f"(here {os.path.dirname(os.path.abspath(data_dir))}), or at a .npz file."
            )
        explicit = local_source(data_dir)
        return [explicit] if explicit else [TFDSSource(name, data_dir, download=False)]
    sources = [TFDSSource(name)]
    known = KNOWN_LOCAL_COPIES.get(name)
    if known is not None and known.is_dir():
        sources.append(idx_source(known))
    if download:
        sources.append(TFDSSource(name, download=True))
    return sources
