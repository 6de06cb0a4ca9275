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
    if not isinstance(spec, (tuple, list)) or len(spec) < 2:
        raise ValueError(
            f"Expected the dataset {name} to yield (images, integer labels) pairs for this model of labels. "
            f"Received: element_spec={spec}. Build it with tfvae.data.load_dataset(..., with_labels=True)."
        )
    if not spec[1].dtype.is_integer:
        raise ValueError(
            f"Expected the dataset {name} to yield integer labels. Received: dtype={spec[1].dtype.name}. "
            "Convert them with dataset.map(lambda x, y: (x, tf.cast(y, tf.int64))) if they hold whole numbers."
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


# Marks the messages of checks that run inside the input pipeline or a SavedModel, so they can be told from
# TensorFlow's own errors and shown as one line.
INPUT_CHECK = "Invalid input:"
_END = " [end]"


def _text(part):
    if isinstance(part, str):
        return part
    if part.dtype.is_floating:
        return tf.strings.as_string(part, shortest=True)
    return tf.strings.as_string(part) if part.dtype != tf.string else part


def _assert(condition, *message):
    """An in-graph check: fails with `message` (strings and tensors, joined) unless `condition` holds."""
    text = tf.strings.join([INPUT_CHECK + " ", *map(_text, message), _END])
    return tf.debugging.Assert(condition, [text])


def input_check_message(error):
    """The message of a failed in-graph input check inside a TensorFlow error, or None for another error."""
    text = str(error)
    start = text.find(INPUT_CHECK)
    if start < 0:
        return None
    end = text.find(_END, start)
    return text[start + len(INPUT_CHECK) + 1 : end if end >= 0 else None]


def image_checks(images, support=(0.0, 1.0), allow_missing=False, where="", name="images", advice=None):
    """In-graph checks of a batch of images: every pixel finite (NaN allowed with `allow_missing`, a missing
    pixel) and in `support`. Returns the check ops, to run before anything uses the batch; `where` starts the
    messages, `advice` ends the one about values that are not finite."""
    nan = tf.math.is_nan(images)
    known = tf.math.is_finite(images) | (nan if allow_missing else tf.zeros_like(nan))
    low = tf.reduce_min(tf.where(nan, tf.cast(support[1], images.dtype), images))  # NaN left out of the extremes
    high = tf.reduce_max(tf.where(nan, tf.cast(support[0], images.dtype), images))
    if advice is None:
        advice = ("NaN marks a missing pixel" if allow_missing else
                  "a model built with missing_data=True takes NaN as a missing pixel")
    return [
        _assert(tf.reduce_all(known), where, f"expected finite {name}. Received: non-finite values: ",
                tf.reduce_sum(tf.cast(~known, tf.int32)), f" ({advice})"),
        _assert((low >= support[0]) & (high <= support[1]), where,
                f"expected {name} in [{support[0]}, {support[1]}]. Received: values in [", low, ", ", high,
                "]. Scale 8-bit images with x / 255."),
    ]


def label_checks(labels, num_classes, allow_unlabeled=False, where="", name="labels"):
    """In-graph check of integer labels: in [0, num_classes), or −1 (unlabeled) with `allow_unlabeled`."""
    lowest = -1 if allow_unlabeled else 0
    allowed = f"[0, {num_classes})" + (", or -1 for unlabeled examples" if allow_unlabeled else "")
    labels = tf.cast(labels, tf.int64)
    low, high = tf.reduce_min(labels), tf.reduce_max(labels)
    return [_assert((low >= lowest) & (high < num_classes), where, f"expected {name} in {allowed}. Received: labels in [",
                    low, ", ", high, "]")]


def checked_batches(dataset, support, num_classes=0, allow_unlabeled=False, allow_missing=False, name="x"):
    """`dataset` (image batches or (images, labels) pairs) with every batch checked as it flows (`image_checks`,
    `label_checks`);
    a bad batch stops `fit` with a message naming it and what is wrong."""

    def check(index, batch):
        parts = batch if isinstance(batch, (tuple, list)) else (batch,)
        images = parts[0]
        labels = parts[1] if len(parts) > 1 and parts[1].dtype.is_integer else None  # float labels: refused by spec
        where = tf.strings.join([f"the dataset {name}, batch ", tf.strings.as_string(index), " of an epoch (from 0): "])
        checks = image_checks(images, support, allow_missing, where)
        if num_classes and labels is not None:
            checks += label_checks(labels, num_classes, allow_unlabeled, where)
        with tf.control_dependencies(checks):
            return tf.nest.map_structure(tf.identity, batch)

    return dataset.enumerate().map(check).prefetch(tf.data.AUTOTUNE)  # checked ahead, beside the training step
