"""Priors p(z) (or p(z|y)): layers whose call returns a `tfd` distribution over latent codes of shape (latent_dim,).

A model holds its prior as a part (`tfvae.VAE(encoder, decoder, prior=...)`), saved with it. The model
builds the prior for its networks, `build((latent_dim,), num_classes)`, so `StandardNormal()` needs no
arguments. The model calls its prior with keywords only, `prior(encoder=..., labels=...)`: priors defined
through the encoder use `encoder`; priors of labels, p(z|y), use `labels` (and without them give
p(z) = Σ_y p(y) p(z|y)); the others ignore both. A new prior is a subclass of `BasePrior` here plus its
entry in `tfvae.registry.PRIORS`.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import registry
from tfvae.distributions import SCALE_FLOOR, UNIT_RAW_SCALE
from tfvae.limits import MAX_CLASSES, MAX_LATENT_DIM, check_count

tfd = tfp.distributions


class BasePrior(keras.layers.Layer):
    """p(z) as a layer: `build((latent_dim,), num_classes)` creates its weights, `call(encoder, labels)` returns
    the distribution."""

    takes_labels = False  # whether it is p(z|y), which needs a model of labels

    def __init__(self, latent_dim=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # float32 parameters, as the posterior heads have
        super().__init__(**kwargs)
        self.latent_dim = None if latent_dim is None else check_count("latent_dim", latent_dim, maximum=MAX_LATENT_DIM)
        if latent_dim is not None and self.ready_to_build():
            self.build((latent_dim,))

    def ready_to_build(self):
        """Whether the constructor's arguments determine the weights (else the model builds the prior)."""
        return True

    def build(self, input_shape, num_classes=0):
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

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


@keras.saving.register_keras_serializable(package="tfvae")
class StandardNormal(BasePrior):
    """p(z) = N(0, I), the prior of Kingma & Welling (2013)."""

    def call(self, encoder=None, labels=None):
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_dim], tf.float32))


@keras.saving.register_keras_serializable(package="tfvae")
class MixtureOfGaussians(BasePrior):
    """p(z) = Σ_k π_k N(μ_k, diag σ_k²) with learned weights π, means μ and scales σ (as in TFP's VAE example).

    Means start as N(0, 1) draws (the components apart), scales at 1, weights equal. KL(q || p) has no
    closed form, so models with this prior estimate it by Monte Carlo.
    """

    learned_weights = True

    def __init__(self, num_components=10, latent_dim=None, **kwargs):
        self.num_components = check_count("num_components", num_components, maximum=MAX_LATENT_DIM)
        super().__init__(latent_dim=latent_dim, **kwargs)

    def build_weights(self):
        shape = (self.num_components, self.latent_dim)
        self.means = self.add_weight(shape=shape, initializer=keras.initializers.RandomNormal(), name="means")
        self.raw_scales = self.add_weight(
            shape=shape, initializer=keras.initializers.Constant(UNIT_RAW_SCALE), name="raw_scales"
        )
        self.logits = self.add_weight(shape=(self.num_components,), initializer="zeros", name="logits",
                                      trainable=self.learned_weights)

    def _scales(self):
        return tf.nn.softplus(self.raw_scales) + SCALE_FLOOR

    def call(self, encoder=None, labels=None):
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=self.logits),
            components_distribution=tfd.MultivariateNormalDiag(loc=self.means, scale_diag=self._scales()),
        )

    def get_config(self):
        return {**super().get_config(), "num_components": self.num_components}


@keras.saving.register_keras_serializable(package="tfvae")
class ClassConditionalNormal(MixtureOfGaussians):
    """p(z|y) = N(μ_y, diag σ_y²), a learned Gaussian per class: the conditional prior network of Sohn et al.
    (2015), here of the label. For a model of labels only.

    Given labels, each example's prior is its class's Gaussian, so codes drawn for "a 7" lie where the
    encoder puts sevens, and samples are of the requested class even where the decoder leans on z rather
    than y. Without labels it is the marginal p(z) = Σ_y p(y) p(z|y) with p(y) uniform. KL(q(z|x, y) ||
    p(z|y)) is in closed form.
    """

    takes_labels = True
    learned_weights = False  # p(y) is uniform

    def __init__(self, num_classes=None, latent_dim=None, **kwargs):
        self.num_classes = None if num_classes is None else check_count("num_classes", num_classes, 2, MAX_CLASSES)
        super().__init__(num_components=num_classes or 2, latent_dim=latent_dim, **kwargs)

    def ready_to_build(self):
        return self.num_classes is not None

    def build(self, input_shape, num_classes=0):
        if self.num_classes is None:
            self.num_classes = self.num_components = check_count("num_classes", num_classes, 2, MAX_CLASSES)
        elif num_classes and num_classes != self.num_classes:
            raise ValueError(
                f"Expected the prior's num_classes to be the networks' ({num_classes}). Received: num_classes={self.num_classes}"
            )
        super().build(input_shape)

    def call(self, encoder=None, labels=None):
        if labels is None:
            return super().call()
        labels = tf.cast(labels, tf.int32)
        return tfd.MultivariateNormalDiag(loc=tf.gather(self.means, labels), scale_diag=tf.gather(self._scales(), labels))

    def get_config(self):
        config = {**super().get_config(), "num_classes": self.num_classes}
        del config["num_components"]
        return config


def make_prior(prior, **options):
    """The prior registered under the name `prior` (`tfvae.registry.PRIORS`)."""
    return registry.lookup("prior", prior)(**options)
