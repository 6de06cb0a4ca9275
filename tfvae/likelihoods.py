"""Likelihood heads p(x|z): layers that turn a decoder's raw output into a `tfd` distribution over images.

Heads keep their parameters in float32 so that log-probabilities stay well defined under mixed precision.
Each has a `support`, the range data must lie in (checked where data enters).
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import registry
from tfvae.distributions import SCALE_FLOOR, UNIT_RAW_SCALE

tfd = tfp.distributions


class LogitBernoulli(tfd.Bernoulli):
    """`tfd.Bernoulli` on logits whose log-probability costs one softplus per pixel, not two.

    log p(x) = x·l − softplus(l), equal to TFP's (1−x)·log(1−p) + x·log p for
    x in [0, 1] and finite logits; the softplus is most of the cost of an
    importance-sampled evaluation, so this halves its elementwise work.
    """

    def _log_prob(self, event):
        logits = self._logits_parameter_no_checks()
        return tf.cast(event, logits.dtype) * logits - tf.math.softplus(logits)


@keras.saving.register_keras_serializable(package="tfvae")
class BernoulliLikelihood(keras.layers.Layer):
    """p(x|z) = prod over pixels of Bernoulli(sigmoid(logits)); data must lie in [0, 1]."""

    support = (0.0, 1.0)

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, logits):  # (..., H, W, C)
        """Independent Bernoulli pixels with these `logits` (..., H, W, C), one event over the image axes."""
        logits = tf.cast(logits, tf.float32)
        return tfd.Independent(
            LogitBernoulli(logits=logits, dtype=tf.float32),
            reinterpreted_batch_ndims=3,
        )


@keras.saving.register_keras_serializable(package="tfvae")
class GaussianLikelihood(keras.layers.Layer):
    """p(x|z) = N(sigmoid(f(z)), σ²I): σ fixed by `scale`, or learned when `scale="learned"`.

    The mean is squashed into (0, 1) as in Kingma & Welling's Frey Face model,
    so that decoded images stay in the pixel range.
    """

    support = (-float("inf"), float("inf"))

    def __init__(self, scale=0.1, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if scale != "learned" and not (
            isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale < math.inf
        ):
            raise ValueError(
                'Expected a finite Gaussian likelihood scale > 0, or "learned". '
                f"Received: scale={scale!r}"
            )
        self.scale = scale

    def build(self, input_shape):
        """Creates the learned σ (one for all pixels, starting at 1) when `scale="learned"`; a fixed σ needs no weight."""
        if self.scale == "learned":
            # Learned σ, shared by all pixels; starts at 1.
            self.raw_scale = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(UNIT_RAW_SCALE),
                name="raw_scale",
            )

    def current_scale(self):
        """σ as it is now: the fixed `scale`, or softplus of the learned weight plus a floor."""
        if self.scale == "learned":
            return tf.nn.softplus(self.raw_scale) + SCALE_FLOOR
        return tf.constant(self.scale, tf.float32)

    def call(self, raw):  # (..., H, W, C)
        """N(sigmoid(raw), σ²) for each pixel, one event over the image axes."""
        mean = tf.sigmoid(tf.cast(raw, tf.float32))
        return tfd.Independent(
            tfd.Normal(loc=mean, scale=self.current_scale()),
            reinterpreted_batch_ndims=3,
        )

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="tfvae")
class FeatureGaussianLikelihood(keras.layers.Layer):
    """p(f|z) = N(f(z), diag(σ²)) over real-valued features, such as another VAE's latent codes.

    Unlike `GaussianLikelihood` (pixels), the mean is not squashed, since features are
    unbounded, and σ is learned per feature (it starts at 1): a VAE's inactive latent
    units stay wide N(0, 1) noise while its active ones are narrow.
    """

    support = (-float("inf"), float("inf"))

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def build(self, input_shape):  # (None, *feature_shape)
        """Creates one learned σ per feature, starting at 1, so that features the data leaves unused cost nothing."""
        self.raw_scale = self.add_weight(
            shape=tuple(input_shape[1:]), initializer=keras.initializers.Constant(UNIT_RAW_SCALE), name="raw_scale"
        )

    def call(self, raw):  # (..., *feature_shape)
        """N(raw, σ²) for each feature with its learned σ, one event over the feature axes."""
        scale = tf.nn.softplus(self.raw_scale) + SCALE_FLOOR
        return tfd.Independent(tfd.Normal(loc=tf.cast(raw, tf.float32), scale=scale), reinterpreted_batch_ndims=3)


def make_likelihood(likelihood, **options):
    """Builds the likelihood head registered under the name `likelihood` (`tfvae.registry.LIKELIHOODS`)."""
    return registry.lookup("likelihood", likelihood)(**options)
