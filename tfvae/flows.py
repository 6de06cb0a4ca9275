"""Inverse autoregressive flow (Kingma et al. 2016): MADE networks as Keras 3 layers, and the flow as a bijector.

TFP's `AutoregressiveNetwork` is a Keras 2 (tf-keras) layer, which cannot sit inside a Keras 3 model, so MADE
(Germain et al. 2015) is written here: dense layers whose kernels are multiplied by fixed 0/1 masks that make
output i depend on inputs before i only. The flow itself is a `tfb` bijector built from the layers' weights as
tensors, so TFP's distribution algebra applies to it (sampling through it, log-densities, and the stopped copy
DReG and STL take, `tfvae.distributions.stopped`).

Each step maps z to scale ⊙ z + shift from [m, s] = MADE(z, h), h the encoder's context. The `"affine"` update
(the default) is Kingma et al.'s general form, scale exp(s) and shift m, the step of their released code and of
pythae's; the `"gated"` update is their numerically stable one for deep stacks: scale σ = sigmoid(s + 2) /
sigmoid(2), with their forget bias of 2, and shift (1 − σ) ⊙ m. Either is the identity when a step's outputs are
zero (log-determinant Σ log scale = 0). Steps alternate the order.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors

# Kingma et al.'s bias on the gate: σ starts near 1, so each step starts near the identity.
FORGET_BIAS = 2.0
UPDATES = ("gated", "affine")


def degrees(latent_dim, hidden_units, reverse):
    """MADE's degrees: of the inputs (1..d, reversed on alternate steps), of each hidden layer (cycling through
    1..d−1), for `latent_dim` d. An output of degree i may see hidden units of degree < i."""
    inputs = np.arange(1, latent_dim + 1)
    if reverse:
        inputs = inputs[::-1]
    hidden = [np.arange(units) % max(1, latent_dim - 1) + 1 for units in hidden_units]
    return inputs, hidden


def masks(latent_dim, hidden_units, reverse):
    """The 0/1 kernel masks of MADE's layers, input to output; the last maps to 2·d outputs (m, then s)."""
    inputs, hidden = degrees(latent_dim, hidden_units, reverse)
    layers = [inputs, *hidden]
    result = [(layers[i][:, None] <= layers[i + 1][None, :]).astype(np.float32) for i in range(len(hidden))]
    output = (hidden[-1][:, None] < inputs[None, :]).astype(np.float32)  # strictly earlier inputs only
    return [*result, np.concatenate([output, output], axis=1)]


@keras.saving.register_keras_serializable(package="tfvae")
class MaskedDense(keras.layers.Layer):
    """A dense layer whose kernel is multiplied by a fixed 0/1 `mask` (inputs, units): MADE's building block."""

    def __init__(self, mask, kernel_initializer="glorot_uniform", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mask = np.asarray(mask, np.float32)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        """Creates the kernel, of the mask's shape (inputs, units), and the bias."""
        inputs, units = self.mask.shape
        self.kernel = self.add_weight(shape=(inputs, units), initializer=self.kernel_initializer, name="kernel")
        self.bias = self.add_weight(shape=(units,), initializer="zeros", name="bias")

    def masked_kernel(self):
        """The kernel times the mask: zero where an output may not depend on an input, which keeps the step autoregressive."""
        return self.kernel * self.mask

    def get_config(self):
        return {**super().get_config(), "mask": self.mask.tolist(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def made(z, context, step):
    """[m, s] of one step from `step`'s weight tensors: (kernels, biases, context kernel), z (..., d)."""
    kernels, biases, context_kernel = step
    features = tf.nn.relu(z @ kernels[0] + biases[0] + context @ context_kernel)
    for kernel, bias in zip(kernels[1:-1], biases[1:-1]):
        features = tf.nn.relu(features @ kernel + bias)
    return tf.split(features @ kernels[-1] + biases[-1], 2, axis=-1)


def step_map(m, s, update):
    """(scale, log scale, shift) of the step z ↦ scale ⊙ z + shift from MADE's outputs [m, s] (see the module
    docstring): the gated update's σ = sigmoid(s + FORGET_BIAS) / sigmoid(FORGET_BIAS), or the affine exp(s)."""
    if update == "affine":
        return tf.exp(s), s, m
    log_gate = tf.math.log_sigmoid(s + FORGET_BIAS) - tf.math.log_sigmoid(tf.constant(FORGET_BIAS, s.dtype))
    gate = tf.exp(log_gate)
    return gate, log_gate, (1.0 - gate) * m


class InverseAutoregressiveBijector(tfb.AutoCompositeTensorBijector):
    """The steps of an inverse autoregressive flow, from their MADE weights (as tensors) and a context h.

    `steps` holds, per step, (masked kernels, biases, context kernel); `context` is (B, c), broadcast over
    leading sample axes of z; `update` is "affine" or "gated" (see the module docstring). Forward is one MADE
    pass per step; the inverse (needed only for codes this flow did not make) solves each step's triangular
    system, d passes per step. A stopped copy (DReG, STL) always inverts: its density must depend on z alone,
    so the cached base code cannot stand in for it.
    """

    def __init__(self, steps, context, update="affine", validate_args=False, name="inverse_autoregressive_flow"):
        parameters = dict(locals())
        with tf.name_scope(name) as scope:
            self._update = update
            self._steps = tf.nest.map_structure(tf.convert_to_tensor, steps)
            self._context = tf.convert_to_tensor(context)
            super().__init__(forward_min_event_ndims=1, validate_args=validate_args, parameters=parameters, name=scope)

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _transform(self, z):
        """(y, log |det ∂y/∂z|): one MADE pass per step gives both."""
        log_det = tf.zeros(tf.shape(z)[:-1], z.dtype)
        for step in self._steps:
            scale, log_scale, shift = step_map(*made(z, self._context, step), self._update)
            log_det += tf.reduce_sum(log_scale, axis=-1)
            z = scale * z + shift
        return z, log_det

    def _forward(self, z):
        """y, with its log-determinant left in TFP's bijector cache (the attributes of the pair (z, y)), so that
        `log_prob` of a sample the flow just made costs no further MADE pass."""
        y, log_det = self._transform(z)
        self._cache.forward_attributes(z)["ildj"] = -log_det
        return y

    def _forward_log_det_jacobian(self, z):
        return self._transform(z)[1]

    def _inverse(self, y):
        latent_dim = y.shape[-1]
        for step in reversed(self._steps):
            z = y
            for _ in range(latent_dim):  # dimension i settles after i passes (autoregressive)
                scale, _, shift = step_map(*made(z, self._context, step), self._update)
                z = (y - shift) / scale
            y = z
        return y
