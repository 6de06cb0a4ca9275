"""Priors p(z) (or p(z|y)): layers whose call returns a `tfd` distribution over latent codes of shape (latent_dim,).

A model holds its prior as a part (`tfvae.VAE(encoder, decoder, prior=...)`), saved with it. The model
builds the prior for its networks, `build((latent_dim,), num_classes)`, so `StandardNormal()` needs no
arguments. The model calls its prior with keywords only, `prior(encoder=..., labels=...)`: priors defined
through the encoder use `encoder`; priors of labels, p(z|y), use `labels` (and without them give
p(z) = Σ_y p(y) p(z|y)); the others ignore both. A new prior is a subclass of `BasePrior` here plus its
entry in `tfvae.registry.PRIORS`.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import registry
from tfvae.distributions import SCALE_FLOOR, UNIT_RAW_SCALE
from tfvae.limits import MAX_CLASSES, MAX_LATENT_DIM, check_count

# Pseudo-inputs a VampPrior may learn: each costs an encoder pass per training step.
MAX_PSEUDO_INPUTS = 100_000

# A VampPrior's pixels from its pseudo-inputs' weights w, and how w starts (see VampPrior).
PSEUDO_INPUT_PIXELS = {
    "clipped": (lambda w: tf.clip_by_value(w, 0.0, 1.0), lambda: keras.initializers.RandomNormal(mean=0.05, stddev=0.01)),
    "sigmoid": (tf.sigmoid, lambda: keras.initializers.RandomNormal(stddev=0.1)),
}

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

    def build(self, input_shape, num_classes=0, image_shape=None):
        """Takes latent_dim from `input_shape` (latent_dim,) and creates the weights (`build_weights`); `num_classes` and
        `image_shape` are for the priors that depend on them. A latent_dim other than the constructor's is an error."""
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
        """N(0, I) over `latent_dim` dimensions; `encoder` and `labels`, which other priors use, are ignored."""
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
        """The mixture with the learned weights, means and scales, a `tfd.MixtureSameFamily` of diagonal Gaussians."""
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

    def build(self, input_shape, num_classes=0, image_shape=None):
        """Takes `num_classes` from the model when the constructor had none, then creates one Gaussian per class."""
        if self.num_classes is None:
            self.num_classes = self.num_components = check_count("num_classes", num_classes, 2, MAX_CLASSES)
        elif num_classes and num_classes != self.num_classes:
            raise ValueError(
                f"Expected the prior's num_classes to be the networks' ({num_classes}). Received: num_classes={self.num_classes}"
            )
        super().build(input_shape)

    def call(self, encoder=None, labels=None):
        """p(z|y), each label's Gaussian (batch shape (B,)); without `labels`, the marginal p(z) over uniform classes."""
        if labels is None:
            return super().call()
        labels = tf.cast(labels, tf.int32)
        return tfd.MultivariateNormalDiag(loc=tf.gather(self.means, labels), scale_diag=tf.gather(self._scales(), labels))

    def get_config(self):
        config = {**super().get_config(), "num_classes": self.num_classes}
        del config["num_components"]
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class VampPrior(BasePrior):
    """The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) Σ_k q(z | u_k), the mixture of the encoder's
    posteriors at K learned pseudo-inputs u_k in data space.

    Pseudo-inputs are images of pixels in [0, 1]: by default `pixels="clipped"`, clip(w, 0, 1) with w starting
    as N(0.05, 0.01²) draws (Tomczak & Welling's start and hard-tanh), so each of the optimizer's steps moves a
    pixel by the full step; `"sigmoid"`, sigmoid(w) with w ~ N(0, 0.1²), is how VampPriors saved before the
    option were trained (loading one without the option keeps it). A model of labels gives pseudo-input k the
    label k mod C. For a flow posterior, each component is its base Gaussian (the encoder's
    `mixture_component`). KL(q || p) is by Monte Carlo.
    """

    def __init__(self, num_pseudo_inputs=500, latent_dim=None, image_shape=None, num_classes=0, pixels="clipped",
                 **kwargs):
        self.num_pseudo_inputs = check_count("num_pseudo_inputs", num_pseudo_inputs, maximum=MAX_PSEUDO_INPUTS)
        if pixels not in PSEUDO_INPUT_PIXELS:
            raise ValueError(f"Expected pixels to be one of {tuple(PSEUDO_INPUT_PIXELS)}. Received: pixels={pixels!r}")
        self.pixels = pixels
        self.image_shape = None if image_shape is None else tuple(image_shape)
        self.num_classes = num_classes
        super().__init__(latent_dim=latent_dim, **kwargs)

    @classmethod
    def from_config(cls, config):
        """A saved prior without `pixels` predates the option: its pseudo-inputs were sigmoid(w)."""
        return cls(**{"pixels": "sigmoid", **config})

    def ready_to_build(self):
        return self.image_shape is not None

    def build(self, input_shape, num_classes=0, image_shape=None):
        """Takes the image shape (the pseudo-inputs') and `num_classes` from the model, then creates the pseudo-inputs."""
        if image_shape is not None:
            if self.image_shape is not None and tuple(image_shape) != self.image_shape:
                raise ValueError(f"Expected the pseudo-inputs' shape to be the images' ({tuple(image_shape)}). "
                                 f"Received: image_shape={self.image_shape}")
            self.image_shape = tuple(image_shape)
        self.num_classes = num_classes or self.num_classes
        super().build(input_shape)

    def build_weights(self):
        self.raw_pseudo_inputs = self.add_weight(shape=(self.num_pseudo_inputs, *self.image_shape),
                                                 initializer=PSEUDO_INPUT_PIXELS[self.pixels][1](), name="raw_pseudo_inputs")

    def pseudo_inputs(self):
        """The K learned pseudo-inputs, images of pixels in [0, 1]."""
        return PSEUDO_INPUT_PIXELS[self.pixels][0](self.raw_pseudo_inputs)

    def pseudo_labels(self):
        """The label of each pseudo-input in a model of labels, k mod C (None in a model of images alone)."""
        return tf.range(self.num_pseudo_inputs) % self.num_classes if self.num_classes else None

    def components(self, encoder):
        """q(z|u_k) at each pseudo-input u_k (given its label in a model of labels): a distribution of batch (K,)."""
        if encoder is None:
            raise ValueError(f"The {type(self).__name__} is defined through the encoder: call it as "
                             "prior(encoder=vae.encoder), or use vae.prior_distribution().")
        return encoder.mixture_component(encoder(self.pseudo_inputs(), self.pseudo_labels()))

    def call(self, encoder=None, labels=None):
        """The equal mixture of q(z|u_k) over the pseudo-inputs u_k: `encoder` is required, since it defines the prior."""
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=tf.zeros([self.num_pseudo_inputs])),
            components_distribution=self.components(encoder),
        )

    def get_config(self):
        return {**super().get_config(), "num_pseudo_inputs": self.num_pseudo_inputs, "image_shape": self.image_shape,
                "num_classes": self.num_classes, "pixels": self.pixels}


@keras.saving.register_keras_serializable(package="tfvae")
class ClassConditionalVampPrior(VampPrior):
    """p(z|y) = (1/K_y) Σ_{k: y_k = y} q(z | u_k, y_k): a VampPrior per class, each label's mixture taken over the
    posteriors at its own pseudo-inputs (pseudo-input k has label y_k = k mod C). For a model of labels only.

    One Gaussian per class (`ClassConditionalNormal`) spans a class's codes as a single blob, so its draws land
    between the clusters a varied class forms (flat, strappy and heeled sandals) and decode to their blurred
    average; this mixture puts them on the clusters. Without labels it is p(z) = Σ_y p(y) p(z|y), p(y) uniform.
    """

    takes_labels = True

    def build(self, input_shape, num_classes=0, image_shape=None):
        """As `VampPrior.build`, with at least one pseudo-input per class."""
        super().build(input_shape, num_classes=num_classes, image_shape=image_shape)
        if not self.num_classes or self.num_pseudo_inputs < self.num_classes:
            raise ValueError(f"Expected at least one pseudo-input per class ({self.num_classes or 'a model of labels'}). "
                             f"Received: num_pseudo_inputs={self.num_pseudo_inputs}")

    def call(self, encoder=None, labels=None):
        """p(z|y) for each of `labels` (batch (B,)); without `labels`, the marginal over uniform classes."""
        components = self.components(encoder)
        pseudo_labels = self.pseudo_labels()
        if labels is None:  # component k weighs p(y_k) / K_{y_k}
            static_labels = np.arange(self.num_pseudo_inputs) % self.num_classes
            logits = tf.constant(-np.log(np.bincount(static_labels)[static_labels]), tf.float32)
        else:  # (B, K): each example mixes only its label's components
            logits = tf.where(pseudo_labels == tf.cast(labels, tf.int32)[:, None], 0.0, float("-inf"))
        return tfd.MixtureSameFamily(mixture_distribution=tfd.Categorical(logits=logits),
                                     components_distribution=components)


def make_prior(prior, **options):
    """The prior registered under the name `prior` (`tfvae.registry.PRIORS`)."""
    return registry.lookup("prior", prior)(**options)
