"""Priors p(z): layers whose call returns a `tfd` distribution over latent codes of shape (latent_dim,).

A model holds its prior as a part (`tfvae.VAE(encoder, decoder, prior=...)`), saved with it. The model sets
the prior's `latent_dim` from its networks (`build((latent_dim,))`), so `StandardNormal()` needs no
arguments. Call a prior with the model's encoder, `prior(encoder=encoder)`: priors defined through the encoder (a
VampPrior) use it, the others ignore it. A new prior is a subclass of `BasePrior` here plus its entry in
`tfvae.registry.PRIORS`.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import registry
from tfvae.distributions import SCALE_FLOOR, UNIT_RAW_SCALE, gaussian_marginals
from tfvae.limits import MAX_LATENT_DIM, check_count

tfd = tfp.distributions


class BasePrior(keras.layers.Layer):
    """p(z) as a layer: `build((latent_dim,))` creates its weights, `call(encoder=None)` returns the distribution."""

    def __init__(self, latent_dim=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # float32 parameters, as the posterior heads have
        super().__init__(**kwargs)
        self.latent_dim = None if latent_dim is None else check_count("latent_dim", latent_dim, maximum=MAX_LATENT_DIM)
        if latent_dim is not None:
            self.build((latent_dim,))

    def build(self, input_shape):
        latent_dim = check_count("latent_dim", int(input_shape[-1]), maximum=MAX_LATENT_DIM)
        if self.latent_dim is not None and latent_dim != self.latent_dim:
            raise ValueError(
                f"Expected the prior's latent_dim to be the networks' ({latent_dim}). Received: latent_dim={self.latent_dim}"
            )
        self.latent_dim = latent_dim
        self.build_weights()
        self.built = True

    def build_weights(self):
        """Creates the prior's weights, once `self.latent_dim` is known (none for a fixed prior)."""

    def marginals(self, prior):
        """p(z_d) for each dimension d, a distribution of batch shape (latent_dim,) (per-dimension KL, plots)."""
        return gaussian_marginals(prior)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


@keras.saving.register_keras_serializable(package="tfvae")
class StandardNormal(BasePrior):
    """p(z) = N(0, I), the prior of Kingma & Welling (2013)."""

    def call(self, encoder=None):
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_dim], tf.float32))


@keras.saving.register_keras_serializable(package="tfvae")
class MixtureOfGaussians(BasePrior):
    """p(z) = Σ_k π_k N(μ_k, diag σ_k²) with learned weights π, means μ and scales σ (as in TFP's VAE example).

    Means start as N(0, 1) draws (the components apart), scales at 1, weights equal. KL(q || p) has no
    closed form, so models with this prior estimate it by Monte Carlo.
    """

    def __init__(self, num_components=10, latent_dim=None, **kwargs):
        self.num_components = check_count("num_components", num_components, maximum=MAX_LATENT_DIM)
        super().__init__(latent_dim=latent_dim, **kwargs)

    def build_weights(self):
        shape = (self.num_components, self.latent_dim)
        self.means = self.add_weight(shape=shape, initializer=keras.initializers.RandomNormal(), name="means")
        self.raw_scales = self.add_weight(
            shape=shape, initializer=keras.initializers.Constant(UNIT_RAW_SCALE), name="raw_scales"
        )
        self.logits = self.add_weight(shape=(self.num_components,), initializer="zeros", name="logits")

    def _scales(self):
        return tf.nn.softplus(self.raw_scales) + SCALE_FLOOR

    def call(self, encoder=None):
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=self.logits),
            components_distribution=tfd.MultivariateNormalDiag(loc=self.means, scale_diag=self._scales()),
        )

    def marginals(self, prior):
        """The exact marginals: for each dimension d, the 1-d mixture Σ_k π_k N(μ_kd, σ_kd²)."""
        weights = tf.broadcast_to(self.logits, (self.latent_dim, self.num_components))
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=weights),
            components_distribution=tfd.Normal(tf.transpose(self.means), tf.transpose(self._scales())),
        )

    def get_config(self):
        return {**super().get_config(), "num_components": self.num_components}


def make_prior(prior, **options):
    """The prior registered under the name `prior` (`tfvae.registry.PRIORS`)."""
    return registry.lookup("prior", prior)(**options)
