"""`load_dataset`: resolve a dataset name to a source, then build the input pipeline."""

import dataclasses
import os
import pathlib

import numpy as np

from tfvae import masks
from tfvae.data.labels import keep_labels
from tfvae.data.pipeline import make_pipeline
from tfvae.data.sources import KNOWN_LOCAL_COPIES, DataUnavailable, candidate_sources

# Image datasets suggested by name; any other TFDS image dataset works too.
IMAGE_DATASETS = (
    "mnist",
    "fashion_mnist",
    "kmnist",
    "emnist",
    "binarized_mnist",
    "cifar10",
    "svhn_cropped",
)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What was loaded: the image shape, the number of examples, and where they came from."""

    name: str
    split: str
    image_shape: tuple
    num_examples: int
    source: str
    num_classes: int = 0  # 1 + the largest label; 0 for data without labels
    num_labeled: int = 0  # examples with a label (>= 0): all of them, or the `labeled_examples` kept
    classes: tuple = ()  # the classes the split's labels hold
    missing_share: float = 0.0  # share of pixels missing (NaN in the data, or hidden by `missing`)


def _check_name(name, data_dir):
    if data_dir is not None or name in IMAGE_DATASETS or name in KNOWN_LOCAL_COPIES:
        return
    import tensorflow_datasets as tfds

    if name not in tfds.list_builders():
        raise DataUnavailable(
            f"Unknown dataset {name!r}. Expected a TensorFlow Datasets image dataset such as "
            f"{', '.join(IMAGE_DATASETS)}, or --data-dir pointing at IDX files or a .npz file."
        )


def _arrays(source, split):
    """(images uint8 (N, H, W, C), labels (N,), observed bool (N, H, W, C) or None) from one source, checked.

    Float images in [0, 1] (as an .npz may hold) are stored as 8-bit; their NaN pixels are the missing ones.
    """
    images, labels = source.load(split)
    observed = None
    if images.ndim == 4 and np.issubdtype(images.dtype, np.floating):
        observed = ~np.isnan(images)
        known = images[observed]
        if known.size and not (np.isfinite(known).all() and known.min() >= 0 and known.max() <= 1):
            raise DataUnavailable(
                f"{source.description} holds float images with values outside [0, 1]; expected values in [0, 1] "
                "with NaN for missing pixels, or 8-bit (uint8) images."
            )
        images = np.round(np.where(observed, images, 0) * 255).astype(np.uint8)
        observed = None if observed.all() else observed
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataUnavailable(
            f"{source.description} holds images of dtype {images.dtype} and shape {images.shape}; "
            "expected 8-bit (uint8) images of shape (N, H, W) or (N, H, W, C), or float images in [0, 1]."
        )
    return images, labels, observed


def load_dataset(
    name,
    split="train",
    batch_size=128,
    data_dir=None,
    binarize="dynamic",
    shuffle=True,
    seed=0,
    with_labels=False,
    drop_remainder=False,
    download=True,
    return_info=False,
    labeled_examples=None,
    missing=None,
):
    """A `tf.data.Dataset` of float images in [0, 1] (with labels if `with_labels`).

    `split` takes TFDS syntax for every source ("test[:8000]", "train[:90%]").
    `binarize="dynamic"` resamples binary pixels every epoch; "static" fixes
    them with `seed` (use it for evaluation, so numbers are comparable);
    None keeps grey levels. `download=False` never touches the network.
    With `return_info`, returns (dataset, `DatasetInfo`). `labeled_examples`
    keeps that many labels, class-balanced and chosen by `seed`, and marks the
    rest −1 (unlabeled), for semi-supervised training. `missing="random:P"` hides each
    pixel with probability P (fixed per image by `seed`); hidden pixels, like NaN in
    float .npz images, arrive as NaN, for models built with `missing_data=True`.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size!r}")
    _check_name(name, data_dir)
    data_dir = None if data_dir is None else os.fspath(data_dir)
    tried = []
    for source in candidate_sources(name, data_dir, download):
        try:
            images, labels, observed = _arrays(source, split)
        except DataUnavailable as reason:
            tried.append(f"{source.description}: {reason}")
            continue
        except (OSError, ConnectionError) as reason:
            tried.append(f"{source.description}: {type(reason).__name__}: {reason}")
            continue
        if len(images) == 0:
            raise DataUnavailable(f"The split {split!r} of {name!r} is empty ({source.description}).")
        num_classes = int(labels.max()) + 1 if len(labels) else 0
        classes = tuple(int(c) for c in np.unique(labels[labels >= 0]))
        if with_labels and not num_classes:
            raise ValueError(
                f"The split {split!r} of {name!r} has no labels ({source.description}), but this model needs them. "
                "Provide label files beside the images (e.g. train-labels-idx1-ubyte.gz), or train --model vae."
            )
        if labeled_examples is not None:
            labels = keep_labels(labels, labeled_examples, seed)
        if missing is not None:
            hidden = masks.hide_at_random(missing, images.shape, seed)
            observed = hidden if observed is None else observed & hidden
        dataset = make_pipeline(
            images,
            labels,
            batch_size,
            binarize=binarize,
            shuffle=shuffle,
            seed=seed,
            with_labels=with_labels,
            drop_remainder=drop_remainder,
            observed=observed,
        )
        missing_share = 0.0 if observed is None else 1.0 - float(observed.mean())
        info = DatasetInfo(name, split, tuple(int(d) for d in images.shape[1:]), len(images), source.description, num_classes,
                           int(np.sum(labels >= 0)), classes, missing_share)
        return (dataset, info) if return_info else dataset
    hint = (
        "Provide the data with --data-dir (a folder of IDX files such as train-images-idx3-ubyte.gz, "
        "a .npz file with x_train/x_test arrays, or a TFDS data directory)"
    )
    if name == "fashion_mnist":
        hint += ", or install it offline with: apt-get install dataset-fashion-mnist"
    if not download:
        hint += ", or allow a TFDS download (drop --no-download) where a network is available"
    raise DataUnavailable(
        f"Could not load {name!r} split {split!r}. Tried:\n  - " + "\n  - ".join(tried) + f"\n{hint}."
    )


def available_datasets(tfds_data_dir=None):
    """{name: where it is available locally} plus the image datasets TFDS can download by name."""
    local = {name: str(path) for name, path in KNOWN_LOCAL_COPIES.items() if path.is_dir()}
    root = pathlib.Path(tfds_data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()
    for info_file in sorted(root.glob("*/*/dataset_info.json")):
        local.setdefault(info_file.parent.parent.name, str(info_file.parent))
    return {"local": local, "by_name": list(IMAGE_DATASETS)}
