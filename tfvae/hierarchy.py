"""Helmholtz machines: several stochastic layers h_1 .. h_M, Gaussian or binary, as one latent code.

The recognition network q(h_1|x) q(h_2|h_1) ... q(h_M|h_{M-1}) and the generative network
p(h_M) p(h_{M-1}|h_M) ... p(h_1|h_2) are each a distribution over the concatenated code z = (h_1, ..., h_M),
so a hierarchical model is a `tfvae.VAE` whose encoder, prior and decoder are the parts here
(`HierarchicalEncoder`, `HelmholtzPrior`, and a decoder that reads h_1, `FirstLayer`): every bound, estimator,
completion method and export signature applies to it unchanged. The conditionals between stochastic layers are
MLPs evaluated from their weights as tensors, so the chains run in plain TensorFlow, and the recognition
chain's stopped copy (DReG and STL hold q's parameters fixed) is the same chain with its weights held.
"""

import itertools

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import names
from tfvae.distributions import RANDOM_ALGORITHM, SCALE_FLOOR, UNIT_RAW_SCALE, sample, stopped
from tfvae.limits import MAX_LATENT_DIM, check_count
from tfvae.names import check_choice
from tfvae.priors import BasePrior

tfd = tfp.distributions

# The distribution of one stochastic layer from its raw parameters, and how many parameters it takes, for
# each of `tfvae.names.LATENT_TYPES`.
LATENT_TYPES = {
    "gaussian": (lambda params: tfd.MultivariateNormalDiag(
        loc=tf.split(params, 2, axis=-1)[0], scale_diag=tf.nn.softplus(tf.split(params, 2, axis=-1)[1]) + SCALE_FLOOR),
        lambda units: 2 * units),
    "bernoulli": (lambda params: tfd.Independent(tfd.Bernoulli(logits=params, dtype=tf.float32), reinterpreted_batch_ndims=1),
                  lambda units: units),
}


def check_latent_type(latent_type):
    """`latent_type` if it is one of `tfvae.names.LATENT_TYPES` ("gaussian", "bernoulli"), else a ValueError naming them."""
    return check_choice("latent_type", latent_type, names.LATENT_TYPES)


def layer_distribution(latent_type, params):
    """One stochastic layer given its raw parameters (..., params_size)."""
    return LATENT_TYPES[latent_type][0](tf.cast(params, tf.float32))


def params_size(latent_type, units):
    """Raw parameters a stochastic layer of `units` units takes: 2·units if Gaussian (loc, scale), units if binary (logits)."""
    return LATENT_TYPES[latent_type][1](units)


def mlp(inputs, weights):
    """An MLP from its weight tensors [(kernel, bias), ...]: tanh between layers, none on the last. Inputs with any
    leading axes (none too) go through as one matrix: XLA's CPU gradient of a batched einsum is ~30x slower."""
    leading = inputs.shape[:-1]
    outputs = tf.reshape(inputs, [-1, inputs.shape[-1]])
    for index, (kernel, bias) in enumerate(weights):
        outputs = tf.matmul(outputs, kernel) + bias
        if index < len(weights) - 1:
            outputs = tf.tanh(outputs)
    units = kernel.shape[-1]
    outputs = tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [units]], axis=0))
    return tf.ensure_shape(outputs, leading.concatenate([units]))


def _draw(distribution, seed):
    """One draw per batch member (the batch holds every sample already)."""
    return sample(distribution, 1, seed)[0]


class _LayerChain(tfd.Distribution):
    """A chain of stochastic layers over their concatenation: the first layer's distribution `first`, each next
    one from the MLP of the one before (`steps`, weight tensors per link), in the order `dims` lists them."""

    def __init__(self, first, steps, dims, latent_type, name):
        parameters = dict(locals())
        self._first = first
        self._steps = [tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), step) for step in steps]
        self._dims = tuple(dims)
        self._latent_type = latent_type
        reparameterized = tfd.FULLY_REPARAMETERIZED if latent_type == "gaussian" else tfd.NOT_REPARAMETERIZED
        super().__init__(dtype=tf.float32, reparameterization_type=reparameterized, validate_args=False,
                         allow_nan_stats=True, parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _event_shape(self):
        return tf.TensorShape([sum(self._dims)])

    def _event_shape_tensor(self):
        return tf.constant([sum(self._dims)], tf.int32)

    def _batch_shape(self):
        return self._first.batch_shape

    def _batch_shape_tensor(self):
        return self._first.batch_shape_tensor()

    def _split(self, z):
        return tf.split(z, self._dims, axis=-1)

    def conditionals(self, z):
        """The distribution of each layer given the layer before it in `z` (the first from the chain's start)."""
        layers = self._split(z)
        result = [self._first]
        for step, previous in zip(self._steps, layers[:-1]):
            result.append(layer_distribution(self._latent_type, mlp(previous, step)))
        return result

    def _log_prob(self, z):
        return tf.add_n([conditional.log_prob(layer) for conditional, layer in zip(self.conditionals(z), self._split(z))])

    def _sample_n(self, n, seed=None):
        seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), len(self._dims),
                                                                 alg=RANDOM_ALGORITHM))
        layer = sample(self._first, n, seeds[0])
        layers = [layer]
        for step, step_seed in zip(self._steps, seeds[1:]):
            layer = _draw(layer_distribution(self._latent_type, mlp(layer, step)), step_seed)
            layers.append(layer)
        return tf.concat(layers, axis=-1)

    def _mean(self):
        """The chain of means, each layer's mean given the mean of the one before: the point code."""
        layer = self._first.mean()
        layers = [layer]
        for step in self._steps:
            layer = layer_distribution(self._latent_type, mlp(layer, step)).mean()
            layers.append(layer)
        return tf.concat(layers, axis=-1)

    def stopped(self):
        """The same chain with its parameters held constant (`tfvae.distributions.stopped`)."""
        return type(self)(stopped(self._first), tf.nest.map_structure(tf.stop_gradient, self._steps), self._dims,
                          self._latent_type, self.name)


class RecognitionChain(_LayerChain):
    """q(h_1|x) q(h_2|h_1) ... q(h_M|h_{M-1}) over z = (h_1, ..., h_M), batch shape (B,)."""

    def __init__(self, first, steps, dims, latent_type, name="recognition_chain"):
        super().__init__(first, steps, dims, latent_type, name)

    def layers(self):
        """Each layer's posterior given the point code of the layer below: [q(h_1|x), q(h_2|E h_1), ...]."""
        return self.conditionals(self.mean())


class GenerativeChain(_LayerChain):
    """p(h_M) p(h_{M-1}|h_M) ... p(h_1|h_2) over z = (h_1, ..., h_M): the chain runs top down, so it is the
    layer chain in reverse order with its code flipped back."""

    def __init__(self, first, steps, dims, latent_type, name="generative_chain"):
        super().__init__(first, steps, dims, latent_type, name)

    def _to_chain(self, z):
        """z = (h_1, ..., h_M) in the chain's own top-down order (h_M, ..., h_1)."""
        return tf.concat(tf.split(z, self._dims[::-1], axis=-1)[::-1], axis=-1)

    def _from_chain(self, chain):
        return tf.concat(tf.split(chain, self._dims, axis=-1)[::-1], axis=-1)

    def _log_prob(self, z):
        return super()._log_prob(self._to_chain(z))

    def _sample_n(self, n, seed=None):
        return self._from_chain(super()._sample_n(n, seed))

    def _mean(self):
        return self._from_chain(super()._mean())


def _dense_weights(layers):
    """[(kernel, bias)] of Keras Dense layers, as the tensors `mlp` takes."""
    return [(layer.kernel, layer.bias) for layer in layers]


def _dense_stack(sizes, name):
    """Keras Dense layers (float32, so chains stay float32 under mixed precision) mapping sizes[0] -> sizes[-1]."""
    layers = []
    for index, (inputs, units) in enumerate(itertools.pairwise(sizes)):
        layer = keras.layers.Dense(units, dtype="float32", name=f"{name}_{index}")
        layer.build((None, inputs))
        layers.append(layer)
    return layers


def check_layers(latent_dims, hidden_units):
    """(latent_dims, hidden_units) as tuples, checked: whole numbers, and one tuple of hidden units per stochastic layer."""
    latent_dims = tuple(check_count("latent_dims", d, maximum=MAX_LATENT_DIM) for d in latent_dims)
    if not latent_dims or len(hidden_units) != len(latent_dims):
        raise ValueError(
            "Expected one tuple of hidden units per stochastic layer, e.g. latent_dims=(100, 50), "
            f"hidden_units=((200, 200), (100, 100)). Received: latent_dims={latent_dims}, hidden_units={hidden_units}"
        )
    return latent_dims, tuple(tuple(check_count("hidden_units", u) for u in units) for units in hidden_units)


@keras.saving.register_keras_serializable(package="tfvae")
class HierarchicalEncoder(keras.Model):
    """Images -> q(h_1..h_M | x), a `RecognitionChain`: `body` (a Keras model, images -> features) then a dense
    projection to h_1's parameters; each further layer from the one below through an MLP of `hidden_units[m]`."""

    def __init__(self, image_shape, latent_dims, hidden_units, body, latent_type="gaussian", **kwargs):
        super().__init__(**kwargs)
        from tfvae.networks import check_image_shape

        self.image_shape = check_image_shape(image_shape)
        self.latent_dims, self.hidden_units = check_layers(latent_dims, hidden_units)
        self.latent_type = check_latent_type(latent_type)
        self.body = body
        features = body.compute_output_shape((None, *self.image_shape))[-1]
        self.first = _dense_stack([features, params_size(latent_type, self.latent_dims[0])], "first")
        self.links = [
            _dense_stack([below, *units, params_size(latent_type, above)], f"up{m}")
            for m, (below, above, units) in enumerate(zip(self.latent_dims[:-1], self.latent_dims[1:],
                                                          self.hidden_units[1:]), start=1)
        ]
        self.build((None, *self.image_shape))

    num_classes = 0  # the hierarchy conditions on no label
    missing_data = False

    @property
    def latent_dim(self):
        return sum(self.latent_dims)

    def build(self, input_shape):
        """Builds the body for images of `input_shape`; the links between stochastic layers are built with the model."""
        if not self.body.built:
            self.body.build(input_shape)
        self.built = True

    def call(self, images, labels=None):
        """q(h_1..h_M | x) for a batch of images, a `RecognitionChain`; `labels` is ignored (the hierarchy takes none)."""
        first = layer_distribution(self.latent_type, mlp(tf.cast(self.body(images), tf.float32), _dense_weights(self.first)))
        return RecognitionChain(first, [_dense_weights(link) for link in self.links], self.latent_dims, self.latent_type)

    def mixture_component(self, posterior):
        """The top layer's posterior given the point code below, q(h_M | E h_{M-1}): what a VampPrior on the top
        layer mixes (its density at any h_M is one pass, where the chain's marginal q(h_M|x) has none)."""
        return posterior.layers()[-1]

    def get_config(self):
        return {**super().get_config(), "image_shape": self.image_shape, "latent_dims": self.latent_dims,
                "hidden_units": self.hidden_units, "latent_type": self.latent_type,
                "body": keras.saving.serialize_keras_object(self.body)}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "body": keras.saving.deserialize_keras_object(config["body"])})


@keras.saving.register_keras_serializable(package="tfvae")
class HelmholtzPrior(BasePrior):
    """p(h_M) p(h_{M-1}|h_M) ... p(h_1|h_2), a `GenerativeChain`: the top layer N(0, I) (Gaussian) or
    Bernoulli with learned logits (binary, a sigmoid belief network), each layer below from the one above
    through an MLP of the hidden units of the layer below (`hidden_units[m - 1]`, mirroring the encoder).

    `top` puts another prior on a Gaussian top layer p(h_M): any `tfvae.priors` part of `latent_dims[-1]`
    units, such as `VampPrior` (its pseudo-inputs pass through the recognition chain to q(h_M | E h_{M-1})).
    """

    def __init__(self, latent_dims, hidden_units, latent_type="gaussian", top=None, **kwargs):
        self.latent_dims, self.hidden_units = check_layers(latent_dims, hidden_units)
        self.latent_type = check_latent_type(latent_type)
        if top is not None and (self.latent_type != "gaussian" or getattr(top, "takes_labels", False)):
            raise ValueError(
                f"A prior on the top layer ({type(top).__name__}) needs Gaussian layers and no labels; a binary top "
                "layer has its own learned Bernoulli prior. Leave top=None, or use latent_type='gaussian'."
            )
        self.top_prior = top
        super().__init__(latent_dim=sum(self.latent_dims), **kwargs)

    def ready_to_build(self):
        return self.top_prior is None or self.top_prior.ready_to_build()

    def build(self, input_shape, num_classes=0, image_shape=None):
        """Builds a prior on the top layer first (a `VampPrior` needs the image shape), then the chain's weights."""
        if self.top_prior is not None and not self.top_prior.built:
            self.top_prior.build((self.latent_dims[-1],), image_shape=image_shape)
        super().build(input_shape, num_classes, image_shape)

    def build_weights(self):
        top = self.latent_dims[-1]
        if self.top_prior is None:
            initial = [0.0] * top + [UNIT_RAW_SCALE] * top if self.latent_type == "gaussian" else [0.0] * top  # N(0, I), Bernoulli(½)
            self.top = self.add_weight(shape=(len(initial),), initializer=keras.initializers.Constant(initial),
                                       name="top", trainable=self.latent_type == "bernoulli")
        self.links = [
            _dense_stack([above, *units, params_size(self.latent_type, below)], f"down{m}")
            for m, (below, above, units) in enumerate(zip(self.latent_dims[:-1], self.latent_dims[1:],
                                                          self.hidden_units[:-1]), start=1)
        ][::-1]  # top down

    def call(self, encoder=None, labels=None):
        """p(h_M) p(h_{M-1}|h_M) ... p(h_1|h_2), a `GenerativeChain`; `encoder` reaches a top prior defined through it."""
        top = layer_distribution(self.latent_type, self.top) if self.top_prior is None else self.top_prior(encoder=encoder)
        return GenerativeChain(top, [_dense_weights(link) for link in self.links], self.latent_dims[::-1], self.latent_type)

    def get_config(self):
        config = {**super().get_config(), "latent_dims": self.latent_dims, "hidden_units": self.hidden_units,
                  "latent_type": self.latent_type, "top": keras.saving.serialize_keras_object(self.top_prior)}
        del config["latent_dim"]
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "top": keras.saving.deserialize_keras_object(config.get("top"))})


@keras.saving.register_keras_serializable(package="tfvae")
class FirstLayer(keras.layers.Layer):
    """Codes (N, h_1 + ... + h_M) -> h_1 (N, units): what the decoder p(x|h_1) reads of a hierarchical code."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = check_count("units", units)

    def call(self, codes):
        """h_1, the first `units` entries of each code: the only layer the decoder p(x|h_1) reads."""
        return codes[..., : self.units]

    def compute_output_shape(self, input_shape):
        """(..., units): the shape Keras needs to build the decoder body on top of this layer."""
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
