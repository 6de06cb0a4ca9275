"""Image grids as PNG files: prior samples, and inputs beside their reconstructions."""

import math
import os
import pathlib

import numpy as np

from tfvae.run_directory import PICTURE_KEY


def grid(images, columns=None):
    """Tiles (N, H, W, C) images in [0, 1] into one (rows*H, columns*W, C) uint8 array."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.ones((rows * height, columns * width, channels), np.float32)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        canvas[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    return (canvas * 255).round().astype(np.uint8)


def save_png(array, path, picture):
    """Saves an (H, W, 1|3) uint8 array as a PNG marked as the tfvae `picture` it is (`run_directory.picture_of`),
    written aside and renamed into place."""
    from PIL import Image, PngImagePlugin

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = array[..., 0] if array.shape[-1] == 1 else array
    info = PngImagePlugin.PngInfo()
    info.add_text(PICTURE_KEY, picture)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(pixels).save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)
    return path


def sample_grid(vae, n=64, seed=0, label=None):
    """A grid (uint8 array) of `n` images generated from the prior (likelihood means).

    A model of labels shows one row per class (n rounded to whole rows), or `n`
    images of one class with `label`.
    """
    if label is not None or not vae.num_classes:
        return grid(vae.sample(n, seed=seed, labels=label).numpy())
    columns = images_per_class(vae.num_classes, n)
    labels = np.repeat(np.arange(vae.num_classes), columns)
    return grid(vae.sample(len(labels), seed=seed, labels=labels).numpy(), columns=columns)


def images_per_class(num_classes, n):
    """How many images of each class `sample_grid` shows for about `n`: whole rows, at least one."""
    return max(1, n // num_classes)


def save_samples(vae, path, n=64, seed=0, label=None):
    """`sample_grid` as a PNG file."""
    return save_png(sample_grid(vae, n, seed, label), path, "samples")


def reconstruction_grid(vae, images, labels=None):
    """A grid (uint8 array): inputs in odd columns, their reconstructions beside them (given labels where the
    model takes them)."""
    images = np.asarray(images, np.float32)
    reconstructions = vae.reconstruct(images, vae.labels_used(labels)).numpy()
    pairs = np.stack([images, reconstructions], axis=1).reshape(-1, *images.shape[1:])
    return grid(pairs, columns=2 * math.ceil(math.sqrt(len(images))))


def save_reconstructions(vae, images, path, labels=None):
    """`reconstruction_grid` as a PNG file."""
    return save_png(reconstruction_grid(vae, images, labels), path, "reconstructions")


def save_completions(path, images, observed, completed, drawn=None):
    """One row per image: the original, its observed part (missing pixels grey), the completion, then any draws."""
    images = np.asarray(images, np.float32)
    observed = np.broadcast_to(np.asarray(observed) > 0, images.shape)
    columns = [images, np.where(observed, images, 0.5), np.asarray(completed)]
    if drawn is not None:
        columns.extend(np.asarray(drawn))
    rows = np.stack(columns, axis=1).reshape(-1, *images.shape[1:])
    return save_png(grid(rows, columns=len(columns)), path, "completions")
