"""Encoders, decoders and classifiers: Keras models whose outputs are `tfd` distributions.

An `Encoder` maps images (B, H, W, C) to q(z|x); a `Decoder` maps latent codes
(..., latent_dim) to p(x|z) over images; a `Classifier` maps images to q(y|x).
Each wraps a plain Keras `body` (MLP or convolutional) and a distribution head
(`tfvae.posteriors`, `tfvae.likelihoods`), so a new architecture only needs a new
body and a new distribution only a new head. With
`num_classes` > 0 the encoder and decoder are conditional: the one-hot label
joins the decoder's input (z ⊕ y) and the encoder's first dense layer's input,
giving q(z|x, y) and p(x|z, y). With `missing_data`, the encoder takes images whose
missing pixels are NaN and gives its body the zero-filled image and the observed
mask side by side (2C channels), as MIWAE's encoder sees them (Mattei & Frellsen 2019).
"""

import collections
import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import registry
from tfvae.likelihoods import make_likelihood
from tfvae.limits import MAX_CLASSES, MAX_LATENT_DIM, check_count
from tfvae.posteriors import DiagonalGaussian, make_posterior

tfd = tfp.distributions


def fan_in_uniform():
    """Kernels drawn U(±1/√fan_in), as PyTorch's `nn.Linear` starts them: the MLP VAE's held-out NLL is 0.4 nats
    better at 50 MNIST epochs than with Keras's Glorot default (benchmarks/RESULTS.md, "Initialization")."""
    return keras.initializers.VarianceScaling(scale=1 / 3, mode="fan_in", distribution="uniform")


def _dense(units, **kwargs):
    """A Dense layer of tfvae's networks: `fan_in_uniform` kernels, zero biases."""
    return keras.layers.Dense(units, kernel_initializer=fan_in_uniform(), **kwargs)


def check_image_shape(image_shape):
    """Returns `image_shape` as a tuple (H, W, C) of positive ints, or raises."""
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in shape)
    ):
        raise ValueError(
            "Expected an image shape (height, width, channels) of positive ints, "
            f"e.g. (28, 28, 1). Received: image_shape={image_shape!r}"
        )
    return shape


def check_latent_dim(latent_dim):
    """`latent_dim` if it is a whole number from 1 to `MAX_LATENT_DIM`, else a ValueError naming it."""
    return check_count("latent_dim", latent_dim, maximum=MAX_LATENT_DIM)


def _check_units(name, units):
    units = tuple(units)
    if not all(isinstance(u, int) and u > 0 for u in units):
        raise ValueError(f"Expected {name} to be positive ints. Received: {name}={units!r}")
    return units


def check_num_classes(num_classes, minimum=0):
    """`num_classes` if it is a whole number from `minimum` to `MAX_CLASSES` (0: no labels), else a ValueError naming it."""
    return check_count("num_classes", num_classes, minimum=minimum, maximum=MAX_CLASSES)


def one_hot(labels, num_classes, dtype):
    """Integer labels (..., ) as one-hot vectors (..., num_classes)."""
    return tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=dtype)


class _Network(keras.Model):
    """A network built around Keras objects (`nested`) that its config holds serialized."""

    nested = ("body",)

    def get_config(self):
        return {**super().get_config(), **{key: keras.saving.serialize_keras_object(getattr(self, key)) for key in self.nested}}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in cls.nested:
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfvae")
class Encoder(_Network):
    """Images (B, H, W, C) -> q(z|x) over `latent_dim`, the distribution the `posterior` head makes.

    The body's features are projected (`to_params`, float32) to the head's raw
    parameters; the head defaults to `tfvae.posteriors.DiagonalGaussian()`.
    With `num_classes` > 0, `call(images, labels)` gives q(z|x, y); the body
    then takes [images, one-hot labels (B, num_classes)]. With `missing_data`,
    NaN marks a missing pixel and the body takes (B, H, W, 2C): the zero-filled
    image and its 0/1 observed mask.
    """

    nested = ("body", "posterior")

    def __init__(self, image_shape, latent_dim, body, posterior=None, num_classes=0, missing_data=False, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = check_image_shape(image_shape)
        self.latent_dim = check_latent_dim(latent_dim)
        self.num_classes = check_num_classes(num_classes)
        self.missing_data = bool(missing_data)
        self.body = body
        self.posterior = DiagonalGaussian(name="posterior") if posterior is None else posterior
        self.to_params = _dense(self.posterior.params_size(latent_dim), dtype="float32", name="to_params")
        self.build((None, *self.image_shape))

    def _body_shape(self, input_shape):
        images_shape = tuple(input_shape)
        if self.missing_data:
            images_shape = (*images_shape[:-1], 2 * images_shape[-1])  # image ⊕ mask
        return [images_shape, (None, self.num_classes)] if self.num_classes else images_shape

    def build(self, input_shape):
        """Builds the body, the projection to the posterior's parameters and the posterior head for images of `input_shape`."""
        if not self.body.built:
            self.body.build(self._body_shape(input_shape))
        features_shape = self.body.compute_output_shape(self._body_shape(input_shape))
        self.to_params.build(features_shape)
        if not self.posterior.built:
            self.posterior.build(self.to_params.compute_output_shape(features_shape))
        self.built = True

    def call(self, images, labels=None):
        """q(z|x) (q(z|x, y) given `labels`) for a batch of images; a missing-data encoder sees the zero-filled image and
        its mask side by side."""
        if self.missing_data:
            observed = tf.math.is_finite(images)
            images = tf.concat([tf.where(observed, images, tf.zeros_like(images)), tf.cast(observed, images.dtype)], axis=-1)
        inputs = images
        if self.num_classes:
            inputs = [images, one_hot(labels, self.num_classes, images.dtype)]
        return self.posterior(self.to_params(self.body(inputs)))

    def mixture_component(self, posterior):
        """q(z|x) as a component of a mixture prior (a VampPrior): as the posterior head says."""
        return self.posterior.mixture_component(posterior)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "missing_data": self.missing_data,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class Decoder(_Network):
    """Latent codes (..., latent_dim) -> p(x|z) over images of `image_shape`.

    Leading sample dimensions are flattened around the body, because Keras
    `Sequential` models accept a single batch dimension only. With
    `num_classes` > 0, `call(z, labels)` gives p(x|z, y): the body's input is
    z ⊕ one-hot(y), of width latent_dim + num_classes; labels (B,) broadcast
    over z's leading sample dimensions.
    """

    nested = ("body", "likelihood")

    def __init__(self, image_shape, latent_dim, body, likelihood, num_classes=0, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = check_image_shape(image_shape)
        self.latent_dim = check_latent_dim(latent_dim)
        self.num_classes = check_num_classes(num_classes)
        self.body = body
        self.likelihood = likelihood
        self.build((None, latent_dim))

    def build(self, input_shape):
        """Builds the body for codes (beside one-hot labels when conditional) and the likelihood head for images."""
        self.body.build((None, self.latent_dim + self.num_classes))
        if not self.likelihood.built:  # a deserialized head with weights arrives built
            self.likelihood.build((None, *self.image_shape))
        self.built = True

    def call(self, z, labels=None):
        """p(x|z) (p(x|z, y) given `labels`) for codes `z` (..., latent_dim), any leading sample axes kept."""
        z = tf.convert_to_tensor(z)  # float32, or the compute dtype under a mixed-precision policy
        sample_shape = tf.shape(z)[:-1]
        if self.num_classes:
            labels = tf.broadcast_to(one_hot(labels, self.num_classes, z.dtype), tf.concat([sample_shape, [self.num_classes]], 0))
            z = tf.concat([z, labels], axis=-1)
        raw = self.body(tf.reshape(z, [-1, self.latent_dim + self.num_classes]))  # (N, H, W, C)
        raw = tf.reshape(raw, tf.concat([sample_shape, self.image_shape], axis=0))
        return self.likelihood(raw)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
        }


@keras.saving.register_keras_serializable(package="tfvae")
class Classifier(_Network):
    """Images (B, H, W, C) -> q(y|x) = Categorical over `num_classes` (the classifier of model M2)."""

    def __init__(self, image_shape, num_classes, body, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = check_image_shape(image_shape)
        self.num_classes = check_num_classes(num_classes, minimum=2)
        self.body = body
        self.to_logits = _dense(num_classes, dtype="float32", name="to_logits")
        self.build((None, *self.image_shape))

    def build(self, input_shape):
        """Builds the body and the projection to class logits for images of `input_shape`."""
        if not self.body.built:
            self.body.build(input_shape)
        self.to_logits.build(self.body.compute_output_shape(input_shape))
        self.built = True

    def call(self, images):
        """q(y|x) for a batch of images, a `tfd.Categorical` (float32 logits, under mixed precision too)."""
        return tfd.Categorical(logits=tf.cast(self.to_logits(self.body(images)), tf.float32))

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "num_classes": self.num_classes,
        }


def _features_body(input_shape, feature_layers, hidden_units, activation, num_classes, name):
    """Images -> `feature_layers` (ending flat) -> dense `hidden_units`; with `num_classes`, a one-hot
    label joins the first dense layer's input (the body then takes [images, labels])."""
    images = keras.Input(input_shape)
    features = images
    for layer in feature_layers:
        features = layer(features)
    inputs = images
    if num_classes:
        labels = keras.Input((num_classes,))
        features = keras.layers.Concatenate()([features, labels])
        inputs = [images, labels]
    for units in hidden_units:
        features = _dense(units, activation=activation)(features)
    return keras.Model(inputs, features, name=name)


def _mlp_body(input_shape, hidden_units, activation, num_classes, name):
    input_shape = check_image_shape(input_shape)
    hidden_units = _check_units("hidden_units", hidden_units)
    return _features_body(input_shape, [keras.layers.Flatten()], hidden_units, activation, num_classes, name)


def _conv_body(input_shape, filters, kernel_size, hidden_units, num_classes, name):
    input_shape = check_image_shape(input_shape)
    filters = _check_units("filters", filters)
    hidden_units = _check_units("hidden_units", hidden_units)
    convolutions = [
        keras.layers.Conv2D(f, kernel_size, strides=2, padding="same", activation="relu") for f in filters
    ]
    return _features_body(input_shape, [*convolutions, keras.layers.Flatten()], hidden_units, "relu", num_classes, name)


def _with_mask_channels(input_shape, missing_data):
    """The encoder body's input shape: the image's, with as many mask channels again under `missing_data`."""
    height, width, channels = check_image_shape(input_shape)
    return (height, width, 2 * channels if missing_data else channels)


def _posterior_head(posterior):
    """A posterior head from its registered name (`tfvae.registry.POSTERIORS`), or the head itself."""
    return make_posterior(posterior, name="posterior") if isinstance(posterior, str) else posterior


def mlp_encoder(input_shape, latent_dim, hidden_units=(400,), activation="relu", num_classes=0, missing_data=False,
                posterior="diagonal"):
    """Fully connected encoder: flatten, `hidden_units` dense layers, then the `posterior` head (a name in
    `tfvae.registry.POSTERIORS` or a head; q(z|x, y) with `num_classes`)."""
    body = _mlp_body(_with_mask_channels(input_shape, missing_data), hidden_units, activation,
                     check_num_classes(num_classes), "mlp_encoder_body")
    return Encoder(input_shape, latent_dim, body, _posterior_head(posterior), num_classes=num_classes,
                   missing_data=missing_data, name="encoder")


def mlp_classifier(input_shape, num_classes, hidden_units=(400,), activation="relu"):
    """Fully connected classifier q(y|x), the same body as `mlp_encoder`."""
    return Classifier(input_shape, num_classes, _mlp_body(input_shape, hidden_units, activation, 0, "mlp_classifier_body"),
                      name="classifier")


def mlp_decoder(
    output_shape,
    latent_dim,
    hidden_units=(400,),
    likelihood="bernoulli",
    activation="relu",
    num_classes=0,
    **likelihood_options,
):
    """Fully connected decoder: `hidden_units` dense layers, then one raw value per pixel.

    `likelihood_options` go to the head, e.g. `scale=0.1` or `scale="learned"`
    for `likelihood="gaussian"`.
    """
    output_shape = check_image_shape(output_shape)
    latent_dim = check_latent_dim(latent_dim)
    hidden_units = _check_units("hidden_units", hidden_units)
    num_classes = check_num_classes(num_classes)
    head = make_likelihood(likelihood, **likelihood_options)
    body = keras.Sequential(
        [keras.Input((latent_dim + num_classes,))]
        + [_dense(units, activation=activation) for units in hidden_units]
        + [
            _dense(math.prod(output_shape)),
            keras.layers.Reshape(output_shape),
        ],
        name="mlp_decoder_body",
    )
    return Decoder(output_shape, latent_dim, body, head, num_classes=num_classes, name="decoder")


def conv_encoder(input_shape, latent_dim, filters=(32, 64), kernel_size=3, hidden_units=(256,), num_classes=0,
                 missing_data=False, posterior="diagonal"):
    """Convolutional encoder: stride-2 convolutions, dense layers, then the `posterior` head (q(z|x, y) with `num_classes`)."""
    body = _conv_body(_with_mask_channels(input_shape, missing_data), filters, kernel_size, hidden_units,
                      check_num_classes(num_classes), "conv_encoder_body")
    return Encoder(input_shape, latent_dim, body, _posterior_head(posterior), num_classes=num_classes,
                   missing_data=missing_data, name="encoder")


def conv_classifier(input_shape, num_classes, filters=(32, 64), kernel_size=3, hidden_units=(256,)):
    """Convolutional classifier q(y|x), the same body as `conv_encoder`."""
    body = _conv_body(input_shape, filters, kernel_size, hidden_units, 0, "conv_classifier_body")
    return Classifier(input_shape, num_classes, body, name="classifier")


def conv_decoder(
    output_shape,
    latent_dim,
    filters=(64, 32),
    kernel_size=3,
    likelihood="bernoulli",
    num_classes=0,
    **likelihood_options,
):
    """Convolutional decoder mirroring `conv_encoder`: dense, stride-2 transposed convolutions.

    Works for any (H, W, C): the feature map is upsampled to the next multiple
    of 2**len(filters) and cropped back to (H, W).
    """
    output_shape = check_image_shape(output_shape)
    latent_dim = check_latent_dim(latent_dim)
    filters = _check_units("filters", filters)
    height, width, channels = output_shape
    factor = 2 ** len(filters)
    start_h, start_w = math.ceil(height / factor), math.ceil(width / factor)
    excess_h, excess_w = start_h * factor - height, start_w * factor - width
    num_classes = check_num_classes(num_classes)
    head = make_likelihood(likelihood, **likelihood_options)
    body = keras.Sequential(
        [
            keras.Input((latent_dim + num_classes,)),
            _dense(start_h * start_w * filters[0], activation="relu"),
            keras.layers.Reshape((start_h, start_w, filters[0])),
        ]
        + [
            keras.layers.Conv2DTranspose(
                f, kernel_size, strides=2, padding="same", activation="relu"
            )
            for f in filters
        ]
        + [
            keras.layers.Conv2DTranspose(channels, kernel_size, padding="same"),
            keras.layers.Cropping2D(
                ((excess_h // 2, excess_h - excess_h // 2), (excess_w // 2, excess_w - excess_w // 2))
            ),
        ],
        name="conv_decoder_body",
    )
    return Decoder(output_shape, latent_dim, body, head, num_classes=num_classes, name="decoder")


Architecture = collections.namedtuple("Architecture", ["encoder", "decoder", "classifier"])

# The builders of each architecture `tfvae.registry.ARCHITECTURES` names.
MLP = Architecture(mlp_encoder, mlp_decoder, mlp_classifier)
CONV = Architecture(conv_encoder, conv_decoder, conv_classifier)


def networks_for(architecture):
    """The (encoder, decoder, classifier) builders registered as `architecture` (`tfvae.registry.ARCHITECTURES`)."""
    return registry.lookup("architecture", architecture)


def image_networks(input_shape, latent_dim, architecture="mlp", likelihood="bernoulli", gaussian_scale=0.1, num_classes=0,
                   missing_data=False, posterior="diagonal", hidden_units=None):
    """(encoder, decoder) of `architecture` for images of `input_shape`, conditioned on `num_classes` classes if > 0.

    `gaussian_scale` (a float σ, or "learned") applies to `likelihood="gaussian"` only; with
    `missing_data` the encoder takes images whose missing pixels are NaN; `posterior` names the
    encoder's head (`tfvae.registry.POSTERIORS`) or is one; `hidden_units` sizes an MLP's dense
    layers (`mlp_size`).
    """
    make_encoder, make_decoder, _ = networks_for(architecture)
    size = mlp_size(architecture, hidden_units)
    likelihood_options = {"scale": gaussian_scale} if likelihood == "gaussian" else {}
    return (
        make_encoder(input_shape, latent_dim, num_classes=num_classes, missing_data=missing_data, posterior=posterior,
                     **size),
        make_decoder(input_shape, latent_dim, likelihood=likelihood, num_classes=num_classes, **size,
                     **likelihood_options),
    )


def mlp_size(architecture, hidden_units):
    """The builders' keyword for an MLP's `hidden_units` (none when None: each builder's own default, (400,)).

    Only the MLP takes them: a conv network's sizes are its builders' own options (`conv_encoder`, ...).
    """
    if hidden_units is None:
        return {}
    if networks_for(architecture) is not MLP:
        raise ValueError(
            f"hidden_units sizes the MLP's dense layers; architecture={architecture!r} has its own sizes. Leave "
            "hidden_units unset, or build the networks with tfvae.networks (e.g. conv_encoder(..., hidden_units=...))."
        )
    return {"hidden_units": _check_units("hidden_units", hidden_units)}
