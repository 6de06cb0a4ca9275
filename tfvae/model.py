"""The Variational Autoencoder: a `keras.Model` trained on the reparameterized ELBO.

The encoder and decoder return `tfd` distributions; `call` returns the
reconstruction mean only, so `predict` and SavedModel signatures see tensors.
"""

import math

import keras
import tensorflow as tf

from tfvae import networks, objectives
from tfvae.base_model import BaseVAE
from tfvae.distributions import standard_normal_prior
from tfvae.limits import MAX_TENSOR_ELEMENTS, check_count
from tfvae.validation import check_fit_input, check_images

# Elements (samples x batch x pixels) of one importance-sampling chunk: bounds memory for large K, and at
# 2**21 (8 MB) ran 1.2x faster under XLA on CPU than at 2**24 (benchmarks/evaluation_throughput.py).
IWAE_CHUNK_ELEMENTS = 2**21

SAMPLE_MODES = {
    "mean": lambda likelihood, seed: likelihood.mean(),
    "sample": lambda likelihood, seed: likelihood.sample(seed=seed),
}


@keras.saving.register_keras_serializable(package="tfvae")
class VAE(BaseVAE):
    """Variational Autoencoder (Kingma & Welling, 2013) with prior p(z) = N(0, I).

    Training maximizes ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) with
    `num_samples` reparameterized draws z = μ + σ·ε per example. `beta`
    weighs the KL term (a non-trainable variable, so callbacks such as
    `KLWarmup` can anneal it); `kl` is "analytic" or "monte_carlo".

    #### Example
    ```python
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20)
    vae.compile()                      # Adam(1e-3), XLA on
    vae.fit(x_train, epochs=10, validation_data=(x_test,))
    ```
    """

    def __init__(self, encoder, decoder, beta=1.0, kl="analytic", num_samples=1, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if encoder.latent_dim != decoder.latent_dim:
            raise ValueError(
                "Expected the encoder and decoder to share latent_dim. Received: "
                f"encoder.latent_dim={encoder.latent_dim}, decoder.latent_dim={decoder.latent_dim}"
            )
        if tuple(encoder.image_shape) != tuple(decoder.image_shape):
            raise ValueError(
                "Expected the encoder and decoder to share image_shape. Received: "
                f"encoder.image_shape={encoder.image_shape}, decoder.image_shape={decoder.image_shape}"
            )
        if not (isinstance(beta, (int, float)) and beta >= 0):
            raise ValueError(f"Expected beta >= 0. Received: beta={beta!r}")
        check_count("num_samples", num_samples)
        self.encoder = encoder
        self.decoder = decoder
        self.kl = objectives.check_kl(kl)
        self.num_samples = num_samples
        self.initial_beta = float(beta)
        self.beta = keras.Variable(float(beta), trainable=False, name="beta", dtype="float32")
        self.build((None, *self.image_shape))

    @classmethod
    def for_images(
        cls,
        input_shape,
        latent_dim=20,
        architecture="mlp",
        likelihood="bernoulli",
        gaussian_scale=0.1,
        **vae_options,
    ):
        """The common case: an MLP or conv encoder/decoder pair for images of `input_shape`.

        `gaussian_scale` (a float σ, or "learned") applies to `likelihood="gaussian"` only.
        """
        make_encoder, make_decoder = networks.networks_for(architecture)
        likelihood_options = {"scale": gaussian_scale} if likelihood == "gaussian" else {}
        return cls(
            make_encoder(input_shape, latent_dim),
            make_decoder(input_shape, latent_dim, likelihood=likelihood, **likelihood_options),
            **vae_options,
        )

    @property
    def image_shape(self):
        return tuple(self.encoder.image_shape)

    @property
    def latent_dim(self):
        return self.encoder.latent_dim

    @property
    def data_support(self):
        return self.decoder.likelihood.support

    def build(self, input_shape):
        # The networks build themselves from their shapes; only unbuilt ones need it.
        if not self.encoder.built:
            self.encoder.build(input_shape)
        if not self.decoder.built:
            self.decoder.build((None, self.latent_dim))
        self.built = True

    # Training -----------------------------------------------------------------

    def prior(self):
        return standard_normal_prior(self.latent_dim)

    def compute_elbo_terms(self, images, seed, num_samples=None):
        """Per-example loss, reconstruction, kl and elbo (nats) for a batch of images."""
        return objectives.elbo_terms(
            images,
            self.encoder,
            self.decoder,
            self.prior(),
            seed,
            num_samples=num_samples or self.num_samples,
            kl=self.kl,
            beta=self.beta,
        )

    def compute_terms(self, data, seed):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.compute_elbo_terms(images, seed)

    def check_data(self, x, y=None, name="x"):
        check_fit_input(x, self.image_shape, self.data_support, name)

    # Inference ----------------------------------------------------------------

    def call(self, images):
        """The reconstruction mean E[x | z = posterior mean]: tensors only, for predict and serving."""
        return self.decoder(self.encoder(images).mean()).mean()

    def _checked(self, images):
        check_images(images, self.image_shape, self.data_support)
        return tf.convert_to_tensor(images, tf.float32)

    def encode(self, images):
        """The approximate posterior q(z|x), a `tfd.MultivariateNormalDiag` with batch shape (B,)."""
        return self.encoder(self._checked(images))

    def decode(self, z):
        """The likelihood p(x|z) for latent codes z of shape (..., latent_dim)."""
        z = tf.convert_to_tensor(z, tf.float32)
        if z.shape.rank is None or z.shape.rank < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"Expected latent codes of shape (..., {self.latent_dim}). Received: shape={tuple(z.shape)}"
            )
        return self.decoder(z)

    def reconstruct(self, images):
        """Reconstruction means for a batch of images (same as `call`)."""
        return self(self._checked(images))

    def sample(self, n, seed=None, mode="mean"):
        """`n` images generated from the prior: the likelihood's mean, or a draw with mode="sample".

        `n` and `seed` may be int tensors (as in the exported `sample` signature).
        """
        if not tf.is_tensor(n):
            check_count("n", n, maximum=MAX_TENSOR_ELEMENTS // math.prod(self.image_shape))
        if mode not in SAMPLE_MODES:
            raise ValueError(f"Unknown mode {mode!r}. Expected one of {sorted(SAMPLE_MODES)}.")
        prior_seed, likelihood_seed = tf.unstack(
            tf.random.experimental.stateless_split(self._seed(seed), 2)
        )
        z = self.prior().sample(n, seed=prior_seed)
        return SAMPLE_MODES[mode](self.decoder(z), likelihood_seed)

    def elbo_terms(self, images, num_samples=None, batch_size=256, seed=None):
        """Per-example `elbo`, `reconstruction` and `kl` (nats) as a dict of (N,) tensors."""
        num_samples = self.num_samples if num_samples is None else check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)

        def terms(batch, batch_seed):
            out = self.compute_elbo_terms(batch, batch_seed, num_samples)
            return {key: out[key] for key in ("elbo", "reconstruction", "kl")}

        check_images(images, self.image_shape, self.data_support)
        return self._map_batches(self._eval_function(f"elbo{num_samples}", terms), (images,), batch_size, seed)

    def elbo(self, images, num_samples=None, batch_size=256, seed=None):
        """Per-example ELBO in nats: a lower bound on log p(x)."""
        return self.elbo_terms(images, num_samples, batch_size, seed)["elbo"]

    def log_likelihood(self, images, num_samples=5000, batch_size=100, seed=None, progress=None):
        """Per-example importance-sampled estimate of log p(x) in nats (the IWAE bound).

        Uses q(z|x) as proposal with `num_samples` (K) draws, evaluated in
        chunks so large K fits in memory; the estimate rises towards log p(x) as K grows.
        `progress` (a stage name) shows a progress bar in a terminal.
        """
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        pixels = math.prod(self.image_shape)
        chunk_size = max(1, min(num_samples, IWAE_CHUNK_ELEMENTS // (batch_size * pixels)))

        def bound(batch, batch_seed):
            return objectives.iwae_bound(
                batch, self.encoder, self.decoder, self.prior(), batch_seed, num_samples, chunk_size
            )

        check_images(images, self.image_shape, self.data_support)
        return self._map_batches(
            self._eval_function(f"iwae{num_samples}-{chunk_size}", bound), (images,), batch_size, seed, progress
        )

    # Serialization ------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "beta": self.initial_beta,
            "kl": self.kl,
            "num_samples": self.num_samples,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
