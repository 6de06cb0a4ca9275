"""Encoders and decoders: Keras models whose outputs are `tfd` distributions.

An `Encoder` maps images (B, H, W, C) to q(z|x); a `Decoder` maps latent codes
(..., latent_dim) to p(x|z) over images. Each wraps a plain Keras `body`
(MLP or convolutional) and a distribution head from `tfvae.distributions`,
so new architectures only need a new body.
"""

import math

import keras
import tensorflow as tf

from tfvae.distributions import GaussianPosterior, make_likelihood
from tfvae.limits import MAX_LATENT_DIM, check_count


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
    return check_count("latent_dim", latent_dim, maximum=MAX_LATENT_DIM)


def _check_units(name, units):
    units = tuple(units)
    if not all(isinstance(u, int) and u > 0 for u in units):
        raise ValueError(f"Expected {name} to be positive ints. Received: {name}={units!r}")
    return units


@keras.saving.register_keras_serializable(package="tfvae")
class Encoder(keras.Model):
    """Images (B, H, W, C) -> q(z|x) = MultivariateNormalDiag over `latent_dim`."""

    def __init__(self, image_shape, latent_dim, body, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = check_image_shape(image_shape)
        self.latent_dim = check_latent_dim(latent_dim)
        self.body = body
        self.to_params = keras.layers.Dense(2 * latent_dim, dtype="float32", name="to_params")
        self.posterior = GaussianPosterior(name="posterior")
        self.input_spec = keras.layers.InputSpec(shape=(None, *self.image_shape))
        self.build((None, *self.image_shape))

    def build(self, input_shape):
        self.body.build(input_shape)
        self.to_params.build(self.body.compute_output_shape(input_shape))
        self.built = True

    def call(self, images):
        return self.posterior(self.to_params(self.body(images)))

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
            "body": keras.saving.serialize_keras_object(self.body),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["body"] = keras.saving.deserialize_keras_object(config["body"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfvae")
class Decoder(keras.Model):
    """Latent codes (..., latent_dim) -> p(x|z) over images of `image_shape`.

    Leading sample dimensions are flattened around the body, because Keras
    `Sequential` models accept a single batch dimension only.
    """

    def __init__(self, image_shape, latent_dim, body, likelihood, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = check_image_shape(image_shape)
        self.latent_dim = check_latent_dim(latent_dim)
        self.body = body
        self.likelihood = likelihood
        self.build((None, latent_dim))

    def build(self, input_shape):
        self.body.build((None, self.latent_dim))
        self.likelihood.build((None, *self.image_shape))
        self.built = True

    def call(self, z):
        z = tf.convert_to_tensor(z)  # float32, or the compute dtype under a mixed-precision policy
        sample_shape = tf.shape(z)[:-1]
        raw = self.body(tf.reshape(z, [-1, self.latent_dim]))  # (N, H, W, C)
        raw = tf.reshape(raw, tf.concat([sample_shape, self.image_shape], axis=0))
        return self.likelihood(raw)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "latent_dim": self.latent_dim,
            "body": keras.saving.serialize_keras_object(self.body),
            "likelihood": keras.saving.serialize_keras_object(self.likelihood),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("body", "likelihood"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def mlp_encoder(input_shape, latent_dim, hidden_units=(400,), activation="relu"):
    """Fully connected encoder: flatten, `hidden_units` dense layers, Gaussian head."""
    input_shape = check_image_shape(input_shape)
    hidden_units = _check_units("hidden_units", hidden_units)
    body = keras.Sequential(
        [keras.Input(input_shape), keras.layers.Flatten()]
        + [keras.layers.Dense(units, activation=activation) for units in hidden_units],
        name="mlp_encoder_body",
    )
    return Encoder(input_shape, latent_dim, body, name="encoder")


def mlp_decoder(
    output_shape,
    latent_dim,
    hidden_units=(400,),
    likelihood="bernoulli",
    activation="relu",
    **likelihood_options,
):
    """Fully connected decoder: `hidden_units` dense layers, then one raw value per pixel.

    `likelihood_options` go to the head, e.g. `scale=0.1` or `scale="learned"`
    for `likelihood="gaussian"`.
    """
    output_shape = check_image_shape(output_shape)
    latent_dim = check_latent_dim(latent_dim)
    hidden_units = _check_units("hidden_units", hidden_units)
    head = make_likelihood(likelihood, **likelihood_options)
    body = keras.Sequential(
        [keras.Input((latent_dim,))]
        + [keras.layers.Dense(units, activation=activation) for units in hidden_units]
        + [
            keras.layers.Dense(math.prod(output_shape)),
            keras.layers.Reshape(output_shape),
        ],
        name="mlp_decoder_body",
    )
    return Decoder(output_shape, latent_dim, body, head, name="decoder")


def conv_encoder(
    input_shape, latent_dim, filters=(32, 64), kernel_size=3, hidden_units=(256,)
):
    """Convolutional encoder: stride-2 convolutions, then dense layers, Gaussian head."""
    input_shape = check_image_shape(input_shape)
    filters = _check_units("filters", filters)
    hidden_units = _check_units("hidden_units", hidden_units)
    body = keras.Sequential(
        [keras.Input(input_shape)]
        + [
            keras.layers.Conv2D(f, kernel_size, strides=2, padding="same", activation="relu")
            for f in filters
        ]
        + [keras.layers.Flatten()]
        + [keras.layers.Dense(units, activation="relu") for units in hidden_units],
        name="conv_encoder_body",
    )
    return Encoder(input_shape, latent_dim, body, name="encoder")


def conv_decoder(
    output_shape,
    latent_dim,
    filters=(64, 32),
    kernel_size=3,
    likelihood="bernoulli",
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
    head = make_likelihood(likelihood, **likelihood_options)
    body = keras.Sequential(
        [
            keras.Input((latent_dim,)),
            keras.layers.Dense(start_h * start_w * filters[0], activation="relu"),
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
    return Decoder(output_shape, latent_dim, body, head, name="decoder")


ARCHITECTURES = {
    "mlp": (mlp_encoder, mlp_decoder),
    "conv": (conv_encoder, conv_decoder),
}


def networks_for(architecture):
    """Returns the (encoder builder, decoder builder) pair registered as `architecture`."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {architecture!r}. Expected one of {sorted(ARCHITECTURES)}."
        )
    return ARCHITECTURES[architecture]
