"""The binarized images a tfvae benchmark saves for its peers, read and checked once for every peer script."""

import numpy as np


def load_binary_images(path):
    """(N, 28, 28, 1) 0/1 float32 as tfvae's side saves them; exits with the reason if the file is not that."""
    images = np.load(path)
    if images.ndim != 4 or images.shape[1:] != (28, 28, 1):
        raise SystemExit(f"{path}: expected shape (N, 28, 28, 1), got {images.shape}")
    if not np.all((images == 0) | (images == 1)):
        raise SystemExit(f"{path}: expected binarized images (every value 0 or 1)")
    return images.astype(np.float32)
