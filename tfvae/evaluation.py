"""Held-out evaluation: ELBO terms, importance-sampled log-likelihood, active units, and accuracy where a model classifies."""

import numpy as np
import tensorflow as tf

from tfvae.distributions import marginal_kl, marginals, point

# A latent unit is active when its posterior mean varies across the data by more than this, in units of the
# prior's variance (Burda et al. 2015, section 5.2, with a N(0, I) prior).
ACTIVE_UNIT_THRESHOLD = 0.01


def collect(dataset, limit=None):
    """(images, labels) concatenated from the batches of a `tf.data` dataset; labels are None for image-only data."""
    images, labels, total = [], [], 0
    for batch in dataset:
        batch_images, batch_labels = batch if isinstance(batch, (tuple, list)) else (batch, None)
        images.append(batch_images.numpy())
        if batch_labels is not None:
            labels.append(batch_labels.numpy())
        total += len(images[-1])
        if limit is not None and total >= limit:
            break
    return np.concatenate(images)[:limit], (np.concatenate(labels)[:limit] if labels else None)


def latent_summary(vae, images, labels=None, batch_size=1000, kl=True):
    """(codes, kl) for `images` (given `labels` where the model takes them), each (N, latent_dim): the point
    code of q(z|x) (`tfvae.distributions.point`), and KL(q(z_d|x) || p(z_d)) of each dimension's marginals
    against the model's own prior, in nats (None with `kl=False`, for callers that need the codes alone)."""
    labels = vae.labels_used(labels)
    codes, kls = [], []
    for start in range(0, len(images), batch_size):
        batch_labels = None if labels is None else labels[start : start + batch_size]
        posterior = vae.encode(images[start : start + batch_size], batch_labels)
        codes.append(point(posterior).numpy())
        if kl:
            prior = vae.prior_distribution(None if batch_labels is None else tf.constant(batch_labels))
            kls.append(marginal_kl(marginals(posterior), marginals(prior)).numpy())
    return np.concatenate(codes), np.concatenate(kls) if kl else None


def latent_statistics(vae, images, labels=None, kl=True):
    """Per latent dimension over `images`, against the model's own prior: `kl`, the mean KL(q(z_d|x) || p(z_d))
    in nats (left out with `kl=False`), and `activity`, the variance of the point code over the images in units
    of the prior's variance of z_d (Burda et al.'s Var_x E_q[z_d] for N(0, I)); a unit is active above
    ACTIVE_UNIT_THRESHOLD."""
    codes, kls = latent_summary(vae, images, labels, kl=kl)
    prior_variance = marginals(vae.prior_distribution()).variance().numpy()
    statistics = {"activity": np.var(codes, axis=0) / prior_variance}
    return {**statistics, "kl": kls.mean(axis=0)} if kl else statistics


def active_units(vae, images, threshold=ACTIVE_UNIT_THRESHOLD, labels=None):
    """The number of active latent dimensions over `images` (`latent_statistics`'s `activity` > `threshold`)."""
    return int(np.sum(latent_statistics(vae, images, labels, kl=False)["activity"] > threshold))


def evaluate(model, images, log_likelihood_samples=1000, seed=0, labels=None):
    """Mean held-out `elbo`, `reconstruction`, `kl`, `log_likelihood` (nats per example) and `active_units`.

    A conditional VAE is evaluated given the true `labels` (bounds on log p(x|y)). A model with a
    classifier (M2, M1+M2) bounds log p(x) with the label summed out, as it treats unlabeled images, and
    adds the classifier's `accuracy` on `labels`. `log_likelihood_samples` = 0 skips the
    importance-sampled estimate, the long stage, which shows a progress bar in a terminal and a log line
    elsewhere. Active units are those of the model of images (M1 for M1+M2).
    """
    classifies = hasattr(model, "classify")
    given = None if classifies else model.labels_used(labels)
    if model.num_classes and not classifies and given is None:
        raise ValueError("This model is conditional: evaluate it on labeled data (images and their labels).")
    terms = model.elbo_terms(images, seed=seed, labels=given)
    metrics = {name: float(np.mean(values)) for name, values in terms.items()}
    if log_likelihood_samples:
        estimate = model.log_likelihood(
            images, num_samples=log_likelihood_samples, seed=seed, labels=given,
            progress=f"Importance-sampled log p(x), K={log_likelihood_samples}",
        )
        metrics["log_likelihood"] = float(np.mean(estimate))
        metrics["log_likelihood_samples"] = log_likelihood_samples
    if classifies and labels is not None:
        metrics["accuracy"] = model.accuracy(images, labels)
    vae = model.image_model()
    metrics["active_units"] = active_units(vae, images, labels=vae.labels_used(labels))
    metrics["latent_dim"] = vae.latent_dim
    metrics["num_examples"] = len(images)
    return metrics


def completion_metrics(vae, images, observed, pixel_means, method="importance", num_samples=1000, seed=0, labels=None):
    """(metrics, completed images) for completing the missing pixels of `images` (which hold the truth).

    Metrics: the model's `completion_log_likelihood` of the missing pixels (nats per image) and,
    beside the same figures for a baseline that predicts every missing pixel by the training
    data's `pixel_means`: for Bernoulli data the thresholded completion's `accuracy` and the
    baseline's log-likelihood, for Gaussian data the `mean_squared_error`.
    """
    labels = vae.labels_used(labels)
    completed = vae.complete(images, observed, method=method, num_samples=num_samples, seed=seed, labels=labels).numpy()
    missing = 1.0 - np.broadcast_to(np.asarray(observed, np.float32), images.shape)
    baseline = np.broadcast_to(np.asarray(pixel_means, np.float32), images.shape)
    metrics = {
        "method": method, "num_samples": num_samples, "num_examples": len(images),
        "missing_pixels_per_image": float(missing.sum() / len(images)),
        "completion_log_likelihood": float(np.mean(vae.completion_log_likelihood(
            images, observed, num_samples=num_samples, seed=seed, labels=labels))),
    }
    if vae.data_support == (0.0, 1.0) and np.isin(images, (0.0, 1.0)).all():
        accuracy = lambda means: float(np.sum(((means > 0.5) == (images > 0.5)) * missing) / missing.sum())
        clipped = np.clip(baseline, 1e-6, 1 - 1e-6)
        baseline_log_lik = np.sum(np.where(images > 0.5, np.log(clipped), np.log1p(-clipped)) * missing, axis=(1, 2, 3))
        metrics.update(accuracy=accuracy(completed), baseline_accuracy=accuracy(baseline),
                       baseline_log_likelihood=float(np.mean(baseline_log_lik)))
    else:
        squared_error = lambda means: float(np.sum((means - images) ** 2 * missing) / missing.sum())
        metrics.update(mean_squared_error=squared_error(completed), baseline_mean_squared_error=squared_error(baseline))
    return metrics, completed
