"""Held-out evaluation: ELBO terms, importance-sampled log-likelihood and active units."""

import numpy as np
import tensorflow as tf

# A latent unit is active when its posterior mean varies across the data by more
# than this (Burda et al. 2015, section 5.2).
ACTIVE_UNIT_THRESHOLD = 0.01


def collect_images(dataset, limit=None):
    """Concatenates the image batches of a `tf.data` dataset (labels dropped) into one array."""
    batches, total = [], 0
    for batch in dataset:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        batches.append(images.numpy())
        total += len(batches[-1])
        if limit is not None and total >= limit:
            break
    return np.concatenate(batches)[:limit]


def active_units(vae, images, threshold=ACTIVE_UNIT_THRESHOLD):
    """The number of latent dimensions whose posterior mean has variance > `threshold` over `images`."""
    means = tf.concat(
        [vae.encode(images[start : start + 1000]).mean() for start in range(0, len(images), 1000)], 0
    )
    return int(np.sum(np.var(means.numpy(), axis=0) > threshold))


def evaluate(vae, images, log_likelihood_samples=1000, seed=0):
    """Mean held-out `elbo`, `reconstruction`, `kl`, `log_likelihood` (nats per example) and `active_units`.

    `log_likelihood_samples` = 0 skips the importance-sampled estimate, the
    long stage, which shows a progress bar in a terminal and a log line elsewhere.
    """
    terms = vae.elbo_terms(images, seed=seed)
    metrics = {name: float(np.mean(values)) for name, values in terms.items()}
    if log_likelihood_samples:
        estimate = vae.log_likelihood(
            images, num_samples=log_likelihood_samples, seed=seed,
            progress=f"Importance-sampled log p(x), K={log_likelihood_samples}",
        )
        metrics["log_likelihood"] = float(np.mean(estimate))
        metrics["log_likelihood_samples"] = log_likelihood_samples
    metrics["active_units"] = active_units(vae, images)
    metrics["latent_dim"] = vae.latent_dim
    metrics["num_examples"] = len(images)
    return metrics
