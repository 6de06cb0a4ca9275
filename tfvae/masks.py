"""Which pixels are observed: the usual masks for data completion, and the check every completion runs.

A mask is a boolean array, True where the pixel is known; `make` builds the
common ones by name ("top_half", "random:0.5", "quadrants:3", ...).
"""

import numpy as np

from tfvae.names import MASKS

HALVES = {
    "top_half": lambda h, w: (np.arange(h)[:, None] < h // 2) & np.ones((1, w), bool),
    "bottom_half": lambda h, w: (np.arange(h)[:, None] >= h // 2) & np.ones((1, w), bool),
    "left_half": lambda h, w: np.ones((h, 1), bool) & (np.arange(w)[None, :] < w // 2),
    "right_half": lambda h, w: np.ones((h, 1), bool) & (np.arange(w)[None, :] >= w // 2),
}


def parse(name):
    """(kind, number) of the mask `name` ("quadrants:3" -> ("quadrants", 3); number None for the halves and
    "center"), or a ValueError naming the expected forms: checks a name before any image is at hand."""
    kind, _, argument = str(name).partition(":")
    if (kind in HALVES or kind == "center") and not argument:
        return kind, None
    if kind == "random" and argument:
        return kind, missing_probability(name)
    if kind == "quadrants" and argument:
        return kind, _number(name, argument, int, 1, 3)
    raise ValueError(f"Unknown mask {name!r}. Expected one of {', '.join(MASKS)}.")


def make(name, image_shape, seed=None):
    """The mask `name` for one image of `image_shape` (H, W, C): a bool array, True where observed.

    "top_half" etc. observe that half; "center" hides a square hole of half the
    height and width in the middle; "random:P" hides each pixel with probability
    P; "quadrants:N" observes N of the 4 quadrants, chosen by `seed`.
    """
    if len(image_shape) != 3:
        raise ValueError(f"Expected the shape of one image, (height, width, channels). Received: {tuple(image_shape)}")
    height, width, channels = (int(d) for d in image_shape)
    rng = np.random.default_rng(seed)
    kind, number = parse(name)
    if kind in HALVES:
        plane = HALVES[kind](height, width)
    elif kind == "center":
        plane = np.ones((height, width), bool)
        top, left = height // 4, width // 4
        plane[top : top + height // 2, left : left + width // 2] = False
    elif kind == "random":
        return rng.random((height, width, channels)) >= number
    else:  # "quadrants"
        kept = rng.choice(4, number, replace=False)
        rows, columns = np.arange(height)[:, None] >= height // 2, np.arange(width)[None, :] >= width // 2
        plane = np.zeros((height, width), bool)
        for quadrant in kept:
            plane |= (rows == bool(quadrant // 2)) & (columns == bool(quadrant % 2))
    return np.repeat(plane[:, :, None], channels, axis=2)


def hide_at_random(missing, shape, seed=None):
    """Observed masks of `shape` (N, H, W, C) for `missing="random:P"`: each pixel hidden with probability P.

    What `tfvae.data.load_dataset(..., missing=...)` uses to make complete data incomplete, fixed by `seed`.
    """
    return np.random.default_rng(seed).random(shape, dtype=np.float32) >= missing_probability(missing)


def missing_probability(missing):
    """P of `missing="random:P"`, or a ValueError naming the expected form."""
    kind, _, argument = str(missing).partition(":")
    if kind != "random" or not argument:
        raise ValueError(
            "Expected missing='random:P' (each pixel missing with probability P, e.g. 'random:0.5'). "
            f"Received: missing={missing!r}"
        )
    return _number(missing, argument, float, 0, 1)


def _number(name, text, kind, low, high):
    try:
        value = kind(text)
    except ValueError:
        value = None
    valid = value is not None and ((low < value < high) if kind is float else (low <= value <= high))
    if not valid:
        prefix = str(name).partition(":")[0]
        if kind is float:
            what, example = f"a probability strictly between {low} and {high}", f"{prefix}:0.5"
        else:
            what, example = f"a whole number from {low} to {high}", f"{prefix}:{(low + high) // 2}"
        raise ValueError(f"Mask {name!r} needs {what} after the colon, e.g. {example!r}.")
    return value


def check_observed(observed, images):
    """`observed` as a float32 0/1 array of `images`' shape (one image's mask is broadcast over the batch).

    Each image must have some pixels observed and some missing, and no NaN among the observed ones.
    """
    images = np.asarray(images)
    if images.ndim != 4 or not len(images):
        raise ValueError(f"Expected a batch of at least one image (batch, height, width, channels). Received: shape={images.shape}")
    mask = np.asarray(observed)
    if mask.dtype != bool and not (np.issubdtype(mask.dtype, np.number) and np.isin(mask, (0, 1)).all()):
        raise ValueError("Expected observed to be boolean (or 0/1): True where the pixel is known.")
    if mask.shape == images.shape[1:]:
        mask = np.broadcast_to(mask, images.shape)
    if mask.shape != images.shape:
        raise ValueError(
            f"Expected observed of shape {images.shape[1:]} (one image) or {images.shape} (one per image). "
            f"Received: shape={mask.shape}. Build one with tfvae.masks.make(name, image_shape)."
        )
    mask = mask.astype(bool)
    per_image = mask.reshape(len(mask), -1)
    if not per_image.any(axis=1).all():
        raise ValueError(f"observed has no known pixel in image {int(np.argmin(per_image.any(axis=1)))}: nothing to complete from.")
    if per_image.all(axis=1).any():
        raise ValueError(f"observed marks every pixel of image {int(np.argmax(per_image.all(axis=1)))} as known: nothing to complete.")
    if np.isnan(images[mask]).any():
        raise ValueError(
            "Observed pixels hold NaN: a pixel without a value is missing. Mark such pixels missing (observed False, "
            "or from the command line a --mask that hides them), or fill them in."
        )
    return mask.astype(np.float32)
