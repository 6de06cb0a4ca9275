"""The VAE objectives, written once: ELBO terms and the importance-weighted bound.

Both take the images, the encoder and decoder (callables returning `tfd`
distributions), the prior and an int32 stateless `seed` of shape [2], and
return per-example values in nats.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import RANDOM_ALGORITHM, reparameterized_sample

tfd = tfp.distributions


def analytic_kl(posterior, prior, z):
    """KL(q || p) in closed form (registered by TFP for Gaussian pairs)."""
    del z
    return tfd.kl_divergence(posterior, prior)


def monte_carlo_kl(posterior, prior, z):
    """KL(q || p) estimated from the same samples z ~ q used for reconstruction."""
    return tf.reduce_mean(posterior.log_prob(z) - prior.log_prob(z), axis=0)


KL_ESTIMATORS = {"analytic": analytic_kl, "monte_carlo": monte_carlo_kl}


def check_kl(kl):
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"Unknown kl {kl!r}. Expected one of {sorted(KL_ESTIMATORS)}.")
    return kl


def elbo_terms(images, encoder, decoder, prior, seed, num_samples=1, kl="analytic", beta=1.0):
    """Per-example ELBO terms with L = `num_samples` reparameterized draws.

    Returns a dict of (B,) tensors:
      reconstruction = -E_q[log p(x|z)] summed over pixels,
      kl             = KL(q(z|x) || p(z)), analytic or Monte-Carlo,
      elbo           = -(reconstruction + kl),
      loss           = reconstruction + beta * kl (the β-VAE objective; β=1 is -ELBO).
    """
    posterior = encoder(images)
    z = reparameterized_sample(posterior, num_samples, seed)  # (L, B, latent)
    log_likelihood = decoder(z).log_prob(images)  # (L, B)
    reconstruction = -tf.reduce_mean(log_likelihood, axis=0)
    kl_term = KL_ESTIMATORS[kl](posterior, prior, z)
    return {
        "loss": reconstruction + tf.cast(beta, tf.float32) * kl_term,
        "reconstruction": reconstruction,
        "kl": kl_term,
        "elbo": -(reconstruction + kl_term),
    }


def iwae_bound(images, encoder, decoder, prior, seed, num_samples, chunk_size):
    """Importance-sampled estimate of log p(x) with q(z|x) as proposal (Burda et al. 2015).

    log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K.
    Samples are drawn `chunk_size` at a time and reduced with a running
    logsumexp, so memory stays flat in K; draws beyond K in the last chunk are masked.
    """
    posterior = encoder(images)
    num_chunks = math.ceil(num_samples / chunk_size)
    batch_shape = tf.shape(images)[:1]
    running_max = tf.fill(batch_shape, -float("inf"))
    running_sum = tf.zeros(batch_shape)
    for chunk in tf.range(num_chunks):
        chunk_seed = tf.random.experimental.stateless_fold_in(seed, chunk, alg=RANDOM_ALGORITHM)
        z = reparameterized_sample(posterior, chunk_size, chunk_seed)  # (chunk, B, latent)
        log_weights = (
            decoder(z).log_prob(images) + prior.log_prob(z) - posterior.log_prob(z)
        )  # (chunk, B)
        index = chunk * chunk_size + tf.range(chunk_size)
        log_weights = tf.where(
            (index < num_samples)[:, None], log_weights, -float("inf")
        )
        new_max = tf.maximum(running_max, tf.reduce_max(log_weights, axis=0))
        running_sum = running_sum * tf.exp(running_max - new_max) + tf.reduce_sum(
            tf.exp(log_weights - new_max), axis=0
        )
        running_max = new_max
    return running_max + tf.math.log(running_sum) - math.log(num_samples)
