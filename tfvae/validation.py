"""Checks on user data, run before anything is traced, so mistakes fail with a clear message."""

import numpy as np
import tensorflow as tf


def _shape_advice(shape, image_shape):
    if len(shape) == 3 and tuple(shape[1:]) == image_shape[:2] and image_shape[2] == 1:
        return " Add a channel axis, e.g. x[..., None]."
    if len(shape) == 3 and tuple(shape) == image_shape:
        return " Add a batch axis, e.g. x[None]."
    return ""


def check_image_batch_spec(shape, dtype, image_shape, name="x"):
    """Raises ValueError unless (shape, dtype) describe float images (B, *image_shape)."""
    shape = tuple(None if d is None else int(d) for d in shape)
    if len(shape) != 4 or tuple(shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"Expected {name} to be a batch of images of shape (batch, {', '.join(map(str, image_shape))}). "
            f"Received: shape={shape}.{_shape_advice(shape, tuple(image_shape))}"
        )
    if not tf.as_dtype(dtype).is_floating:
        raise ValueError(
            f"Expected {name} to hold float images in [0, 1]. Received: dtype={tf.as_dtype(dtype).name}. "
            "Convert with x.astype('float32') / 255 for 8-bit images."
        )


# What a model that cannot take missing pixels says when it meets NaN.
MISSING_DATA_ADVICE = (
    "To train on (or evaluate) images whose missing pixels are NaN, build the model with missing_data=True, "
    "e.g. tfvae.VAE.for_images(image_shape, missing_data=True)."
)


def check_images(images, image_shape, support, name="x", allow_missing=False):
    """Validates a concrete batch of images (numpy array or eager tensor): shape, dtype, range.

    With `allow_missing`, NaN marks a missing pixel (models built with `missing_data=True`).
    """
    if isinstance(images, (list, tuple)):
        images = np.asarray(images)
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        raise ValueError(
            f"Expected {name} to be an array or tensor of images. Received: type={type(images).__name__}"
        )
    check_image_batch_spec(images.shape, images.dtype, image_shape, name)
    if tf.is_symbolic_tensor(images):
        return
    values = np.asarray(images)
    if values.size == 0:
        raise ValueError(f"Expected {name} to hold at least one image. Received: shape={values.shape}")
    missing = np.isnan(values)
    if np.isinf(values).any():
        raise ValueError(f"Expected {name} to be finite. Received: {int(np.isinf(values).sum())} inf values.")
    if missing.any() and not allow_missing:
        raise ValueError(f"Expected {name} to be finite. Received: {int(missing.sum())} NaN values. {MISSING_DATA_ADVICE}")
    if missing.all():
        raise ValueError(f"Every pixel of {name} is missing (NaN): nothing to learn from.")
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if low < support[0] or high > support[1]:
        raise ValueError(
            f"Expected {name} in [{support[0]}, {support[1]}] for this likelihood. "
            f"Received: values in [{low}, {high}]. Scale 8-bit images with x / 255."
        )


def check_fit_input(data, image_shape, support, name="x", allow_missing=False):
    """Validates what `fit`/`evaluate`/`predict` receive: arrays fully, datasets by their spec."""
    if data is None:
        return
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, (tuple, list)):
            spec = spec[0]
        if isinstance(spec, dict) or not hasattr(spec, "shape"):
            raise ValueError(
                f"Expected the dataset {name} to yield image batches or (images, labels) pairs. "
                f"Received: element_spec={data.element_spec}"
            )
        check_image_batch_spec(spec.shape, spec.dtype, image_shape, name)
        return
    check_images(data, image_shape, support, name, allow_missing)


def check_labels(labels, count, num_classes, allow_unlabeled=False, name="labels"):
    """Validates integer class labels for `count` examples (an int means one class for all); returns an int32 array.

    With `allow_unlabeled`, −1 marks an example without a label (semi-supervised data).
    """
    if labels is None:
        raise ValueError(f"This model is conditional: pass {name}, integer classes in [0, {num_classes}).")
    if tf.is_symbolic_tensor(labels):
        return tf.cast(labels, tf.int32)
    values = np.asarray(labels)
    if values.ndim == 0 and count is not None and not tf.is_tensor(count):
        values = np.full(int(count), values)
    if not (np.issubdtype(values.dtype, np.integer) or values.dtype == bool):
        raise ValueError(
            f"Expected {name} to be integer classes in [0, {num_classes}). Received: dtype={values.dtype}. "
            "Convert with labels.astype('int64') if they hold whole numbers."
        )
    if values.ndim != 1 or (count is not None and not tf.is_tensor(count) and len(values) != int(count)):
        raise ValueError(f"Expected {name} of shape ({count},), one per example. Received: shape={values.shape}")
    low = -1 if allow_unlabeled else 0
    if values.size and (values.min() < low or values.max() >= num_classes):
        allowed = f"[0, {num_classes})" + (", or -1 for unlabeled examples" if allow_unlabeled else "")
        raise ValueError(f"Expected {name} in {allowed}. Received: values in [{values.min()}, {values.max()}]")
    return values.astype(np.int32)


def check_labeled_dataset(data, name="x"):
    """Validates that a `tf.data` dataset yields (images, integer labels) pairs."""
    spec = data.element_spec
    if not isinstance(spec, (tuple, list)) or len(spec) < 2 or not spec[1].dtype.is_integer:
        raise ValueError(
            f"Expected the dataset {name} to yield (images, integer labels) pairs for this conditional model. "
            f"Received: element_spec={spec}. Build it with tfvae.data.load_dataset(..., with_labels=True)."
        )


def check_labeled_fit_input(x, y, image_shape, support, num_classes, name="x", allow_missing=False,
                             allow_unlabeled=False):
    """Validates (images, labels) that a model conditioned on, or learning, the class trains on."""
    if x is None:
        return
    check_fit_input(x, image_shape, support, name, allow_missing=allow_missing)
    if isinstance(x, tf.data.Dataset):
        check_labeled_dataset(x, name)
    else:
        check_labels(y, len(x), num_classes, allow_unlabeled=allow_unlabeled, name=f"the labels of {name}")
