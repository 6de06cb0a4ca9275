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

from tfvae import flows, registry
from tfvae.distributions import SCALE_FLOOR
from tfvae.limits import check_count

tfd = tfp.distributions


class BasePosterior(keras.layers.Layer):
    """A layer mapping raw parameters (B, params_size(latent_dim)) to q(z|x), a distribution over (latent_dim,)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def params_size(self, latent_dim):
        """How many raw values per example the encoder's projection gives this head."""
        raise NotImplementedError

    def mixture_component(self, posterior):
        """The distribution standing for q(z|x) as a component of a mixture prior (a VampPrior): q itself."""
        return posterior

@keras.saving.register_keras_serializable(package="tfvae")
class DiagonalGaussian(BasePosterior):
    """q(z|x) = N(μ, diag σ²): the first half of the parameters is μ, the second goes through softplus
    plus `SCALE_FLOOR`, so σ > 0 (Kingma & Welling 2013)."""

    def params_size(self, latent_dim):
        return 2 * latent_dim

    def call(self, params):
        """N(μ, diag σ²) from raw parameters [μ, s] (..., 2·latent_dim), σ = softplus(s) + a floor so it stays positive."""
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
        """N(μ, LLᵀ) from raw parameters [μ, L's entries]; L's diagonal goes through softplus (plus a floor) to stay positive."""
        params = tf.cast(params, tf.float32)
        latent_dim = (math.isqrt(9 + 8 * params.shape[-1]) - 3) // 2  # params = d + d(d+1)/2
        loc, raw_tril = params[..., :latent_dim], params[..., latent_dim:]
        tril = tfp.math.fill_triangular(raw_tril)  # (B, d, d)
        raw_diagonal = tf.linalg.diag_part(tril)
        scale_tril = tril + tf.linalg.diag(tf.nn.softplus(raw_diagonal) + SCALE_FLOOR - raw_diagonal)
        return tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale_tril)


@keras.saving.register_keras_serializable(package="tfvae")
class InverseAutoregressiveFlow(BasePosterior):
    """q(z|x): a diagonal Gaussian z_0 ~ N(μ, diag σ²) pushed through `num_steps` inverse autoregressive flow
    steps (Kingma et al. 2016), each a MADE network of `hidden_units` given a context vector h from the encoder.

    The parameters are μ, σ's raw values (d each) and h (`context_units` values; by default 2·d, as many as the
    base Gaussian's: as good a flow as a context of the MADE's width, in a fifth less time per epoch, see
    benchmarks/RESULTS.md).
    `update` is each step's map: "affine" (the default), Kingma et al.'s general form z ↦ exp(s) ⊙ z + m, the
    step of their released code and of pythae's flow, or "gated", their numerically stable update, whose bounded
    scale cannot blow up in deep stacks but barely widens the base Gaussian (0.4 nats worse held-out NLL than
    "affine" on MNIST with two steps, and half the −ELBO gain; see benchmarks/RESULTS.md). A flow saved before
    the option keeps the gated update it was trained with.
    MADE's output layers start at zero, so a new flow is the identity and q starts as the diagonal
    Gaussian; see `tfvae.flows` for the step. log q(z|x) = log q_0(z_0) − Σ log scale over the steps.
    """

    def __init__(self, num_steps=2, hidden_units=(320, 320), context_units=None, update="affine", **kwargs):
        super().__init__(**kwargs)
        if update not in flows.UPDATES:
            raise ValueError(f"Expected update to be one of {flows.UPDATES}. Received: update={update!r}")
        self.update = update
        self.num_steps = check_count("num_steps", num_steps)
        self.hidden_units = tuple(check_count("hidden_units", units) for units in hidden_units)
        if not self.hidden_units:
            raise ValueError("Expected at least one hidden layer in the MADE networks. Received: hidden_units=()")
        self.context_units = None if context_units is None else check_count("context_units", context_units)

    @classmethod
    def from_config(cls, config):
        """A saved flow without `update` predates the option: its steps were gated."""
        return cls(**{"update": "gated", **config})

    def context_size(self, latent_dim):
        """h's width: `context_units`, or by default 2·`latent_dim`."""
        return 2 * latent_dim if self.context_units is None else self.context_units

    def latent_size(self, params_size):
        """d, from the number of raw parameters 2·d + h's width."""
        return params_size // 4 if self.context_units is None else (params_size - self.context_units) // 2

    def params_size(self, latent_dim):
        return 2 * latent_dim + self.context_size(latent_dim)

    def build(self, params_shape):
        """Creates each step's MADE layers and context kernel; output layers start at zero, so the flow starts as identity."""
        latent_dim = self.latent_size(int(params_shape[-1]))
        self.masked = []  # every step's MADE layers, in order; the last of each step is its output layer
        self.context_kernels = []
        for step in range(self.num_steps):
            step_masks = flows.masks(latent_dim, self.hidden_units, reverse=step % 2 == 1)
            for index, mask in enumerate(step_masks):
                output = index == len(step_masks) - 1
                layer = flows.MaskedDense(mask, kernel_initializer="zeros" if output else "glorot_uniform",
                                          name=f"step{step}_layer{index}")
                layer.build((None, mask.shape[0]))
                self.masked.append(layer)
            context = keras.layers.Dense(self.hidden_units[0], use_bias=False, dtype="float32", name=f"step{step}_context")
            context.build((None, self.context_size(latent_dim)))
            self.context_kernels.append(context)
        self.built = True

    def call(self, params):
        """The diagonal Gaussian of the first parameters through the flow steps, which read the context (the rest): a
        `tfd.TransformedDistribution`."""
        params = tf.cast(params, tf.float32)
        latent_dim = self.latent_size(params.shape[-1])
        loc, raw_scale, context = tf.split(params, [latent_dim, latent_dim, self.context_size(latent_dim)], axis=-1)
        base = tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.nn.softplus(raw_scale) + SCALE_FLOOR)
        per_step = len(self.hidden_units) + 1
        steps = []
        for step in range(self.num_steps):
            layers = self.masked[step * per_step : (step + 1) * per_step]
            steps.append(([layer.masked_kernel() for layer in layers], [layer.bias for layer in layers],
                          self.context_kernels[step].kernel))
        return tfd.TransformedDistribution(base, flows.InverseAutoregressiveBijector(steps, context, self.update))

    def mixture_component(self, posterior):
        """The base Gaussian: a flow's density at codes it did not make needs its inverse (d MADE passes per
        step), too costly for a mixture over many pseudo-inputs."""
        return posterior.distribution

    def get_config(self):
        return {**super().get_config(), "num_steps": self.num_steps, "hidden_units": self.hidden_units,
                "context_units": self.context_units, "update": self.update}


def make_posterior(posterior, **options):
    """The posterior head registered under the name `posterior` (`tfvae.registry.POSTERIORS`)."""
    return registry.lookup("posterior", posterior)(**options)
