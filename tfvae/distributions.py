"""Distribution heads: layers that turn raw network outputs into `tfd` objects.

Heads keep their parameters in float32 so that analytic KL terms and
log-probabilities stay well defined under mixed precision.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# Keeps every scale strictly positive after softplus (as in TFP's VAE example).
SCALE_FLOOR = 1e-5

# Random numbers for the reparameterization noise. TensorFlow's default, "auto_select", lets each
# device pick and runs ~7x slower than Philox under XLA on CPU; Philox is fast and device-independent.
RANDOM_ALGORITHM = "philox"

# softplus⁻¹(1): a learned scale's raw value at which σ starts at 1.
UNIT_RAW_SCALE = 0.5413


def standard_normal_prior(latent_dim):
    """The prior p(z) = N(0, I) over `latent_dim` dimensions."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim], tf.float32))


def reparameterized_sample(posterior, num_samples, seed):
    """`num_samples` draws z = μ + σ·ε from q, shape (num_samples, *batch, latent), ε ~ N(0, I) by Philox.

    Differentiable in μ and σ. Posteriors other than `tfd.MultivariateNormalDiag`
    (from user-written encoders) use their own reparameterized `sample`.
    """
    if not isinstance(posterior, tfd.MultivariateNormalDiag):
        return posterior.sample(num_samples, seed=seed)
    shape = tf.concat(
        [[num_samples], posterior.batch_shape_tensor(), posterior.event_shape_tensor()], axis=0
    )
    noise = tf.random.stateless_normal(shape, seed=seed, alg=RANDOM_ALGORITHM)
    return posterior.loc + posterior.scale.diag_part() * noise


def observed_log_prob(likelihood, images, observed):
    """log p(x_o | z): the likelihood's per-pixel log-probabilities summed over observed pixels, shape (..., B).

    `observed` is 1 (or True) where a pixel is known; missing pixels may hold anything, NaN included.
    """
    known = tf.cast(observed, tf.bool)
    per_pixel = likelihood.distribution.log_prob(tf.where(known, images, tf.zeros_like(images)))
    return tf.reduce_sum(tf.where(known, per_pixel, tf.zeros_like(per_pixel)), axis=[-3, -2, -1])


def image_log_prob(likelihood, images, observed=None):
    """log p(x|z) over every pixel, or over the observed ones (`observed_log_prob`) when a mask is given."""
    return likelihood.log_prob(images) if observed is None else observed_log_prob(likelihood, images, observed)


@keras.saving.register_keras_serializable(package="tfvae")
class GaussianPosterior(keras.layers.Layer):
    """Maps features of width 2 * latent_dim to q(z|x) = N(loc, diag(scale²)).

    The first half of the features is the mean, the second half goes through
    softplus plus `SCALE_FLOOR`, so the scale is always > 0.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, params):
        params = tf.cast(params, tf.float32)
        loc, raw_scale = tf.split(params, 2, axis=-1)
        scale = tf.nn.softplus(raw_scale) + SCALE_FLOOR
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)


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
        if self.scale == "learned":
            # Learned σ, shared by all pixels; starts at 1.
            self.raw_scale = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(UNIT_RAW_SCALE),
                name="raw_scale",
            )

    def current_scale(self):
        if self.scale == "learned":
            return tf.nn.softplus(self.raw_scale) + SCALE_FLOOR
        return tf.constant(self.scale, tf.float32)

    def call(self, raw):  # (..., H, W, C)
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
        self.raw_scale = self.add_weight(
            shape=tuple(input_shape[1:]), initializer=keras.initializers.Constant(UNIT_RAW_SCALE), name="raw_scale"
        )

    def call(self, raw):  # (..., *feature_shape)
        scale = tf.nn.softplus(self.raw_scale) + SCALE_FLOOR
        return tfd.Independent(tfd.Normal(loc=tf.cast(raw, tf.float32), scale=scale), reinterpreted_batch_ndims=3)


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "feature-gaussian": FeatureGaussianLikelihood,
}


def make_likelihood(likelihood, **options):
    """Builds the likelihood head registered under the name `likelihood`."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(
            f"Unknown likelihood {likelihood!r}. Expected one of {sorted(LIKELIHOODS)}."
        )
    return LIKELIHOODS[likelihood](**options)
