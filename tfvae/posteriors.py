"""Posterior heads q(z|x): the end of an encoder, from its features' raw parameters to a `tfd` distribution.

An `Encoder` projects its body's features to `head.params_size(latent_dim)` values per example and calls the
head on them. Heads keep float32 parameters (KL terms and log-densities stay well defined under mixed
precision). A new posterior is a subclass of `BasePosterior` here plus its entry in `tfvae.registry.POSTERIORS`:
sampling, DReG/STL's stopped copy, KL, point codes and marginals come from `tfvae.distributions` for any
distribution.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import registry
from tfvae.distributions import SCALE_FLOOR

tfd = tfp.distributions


class BasePosterior(keras.layers.Layer):
    """A layer mapping raw parameters (B, params_size(latent_dim)) to q(z|x), a distribution over (latent_dim,)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def params_size(self, latent_dim):
        """How many raw values per example the encoder's projection gives this head."""
        raise NotImplementedError

@keras.saving.register_keras_serializable(package="tfvae")
class DiagonalGaussian(BasePosterior):
    """q(z|x) = N(μ, diag σ²): the first half of the parameters is μ, the second goes through softplus
    plus `SCALE_FLOOR`, so σ > 0 (Kingma & Welling 2013)."""

    def params_size(self, latent_dim):
        return 2 * latent_dim

    def call(self, params):
        loc, raw_scale = tf.split(tf.cast(params, tf.float32), 2, axis=-1)
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.nn.softplus(raw_scale) + SCALE_FLOOR)


@keras.saving.register_keras_serializable(package="tfvae")
class FullCovarianceGaussian(BasePosterior):
    """q(z|x) = N(μ, LLᵀ) with L lower-triangular: correlated latent dimensions.

    The parameters are μ (latent_dim values) then L's d(d+1)/2 entries, filled in as `tfb.FillScaleTriL`
    does (softplus plus `SCALE_FLOOR` on the diagonal, so L is invertible), but in ops whose gradients XLA
    compiles with a dynamic batch size (FillScaleTriL's do not).
    """

    def params_size(self, latent_dim):
        return latent_dim + latent_dim * (latent_dim + 1) // 2

    def call(self, params):
        params = tf.cast(params, tf.float32)
        latent_dim = (math.isqrt(9 + 8 * params.shape[-1]) - 3) // 2  # params = d + d(d+1)/2
        loc, raw_tril = params[..., :latent_dim], params[..., latent_dim:]
        tril = tfp.math.fill_triangular(raw_tril)  # (B, d, d)
        raw_diagonal = tf.linalg.diag_part(tril)
        scale_tril = tril + tf.linalg.diag(tf.nn.softplus(raw_diagonal) + SCALE_FLOOR - raw_diagonal)
        return tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale_tril)


def make_posterior(posterior, **options):
    """The posterior head registered under the name `posterior` (`tfvae.registry.POSTERIORS`)."""
    return registry.lookup("posterior", posterior)(**options)
