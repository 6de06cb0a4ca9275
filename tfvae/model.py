"""The Variational Autoencoder: a `keras.Model` trained on the reparameterized ELBO.

The encoder and decoder return `tfd` distributions; `call` returns the
reconstruction mean only, so `predict` and SavedModel signatures see tensors.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tfvae import completion, masks, networks, objectives
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

    Training maximizes `objective` with `num_samples` (K) draws z ~ q(z|x) per
    example: "elbo", E_q[log p(x|z)] - KL(q(z|x) || p(z)) (the default), or
    "iwae", the importance-weighted bound log (1/K) Σ_k p(x, z_k)/q(z_k|x)
    (Burda et al. 2015). `gradient_estimator` ("reparameterization", the
    default z = μ + σ·ε; "score_function"; "doubly_reparameterized"; "vimco")
    says how its gradient is estimated (see `tfvae.objectives`). `beta` weighs
    the KL term (a non-trainable variable, so callbacks such as `KLWarmup` can
    anneal it); `kl` is "analytic" or "monte_carlo". `fit` reports `loss`
    (= −bound when β = 1), `reconstruction`, `kl` and `elbo`, in nats per example.

    Built with `missing_data=True` (its encoder's setting), the model trains on
    images whose missing pixels are NaN: bounds count the observed pixels only,
    so they bound log p(x_o), and the encoder sees the zero-filled image and
    its mask (MIWAE, Mattei & Frellsen 2019).

    #### Example
    ```python
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20)
    vae.compile()                      # Adam(1e-3), XLA on
    vae.fit(x_train, epochs=10, validation_data=(x_test,))
    ```
    """

    conditional = False  # whether every batch and call carries labels

    def __init__(
        self,
        encoder,
        decoder,
        beta=1.0,
        kl="analytic",
        num_samples=1,
        objective="elbo",
        gradient_estimator="reparameterization",
        seed=None,
        **kwargs,
    ):
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
        self.objective, self.gradient_estimator = objectives.check_objective(objective, gradient_estimator, num_samples)
        self.initial_beta = float(beta)
        self.beta = keras.Variable(float(beta), trainable=False, name="beta", dtype="float32")
        if self.gradient_estimator == "score_function":
            # Running mean of the learning signal, the score-function estimator's control variate.
            self.baseline = keras.Variable(0.0, trainable=False, name="baseline", dtype="float32", aggregation="mean")
        self.build((None, *self.image_shape))
        objectives.check_reparameterizable(self._posterior(tf.zeros((1, *self.image_shape))), self.gradient_estimator)

    @classmethod
    def for_images(
        cls,
        input_shape,
        latent_dim=20,
        architecture="mlp",
        likelihood="bernoulli",
        gaussian_scale=0.1,
        missing_data=False,
        **vae_options,
    ):
        """The common case: an MLP or conv encoder/decoder pair for images of `input_shape`.

        `gaussian_scale` (a float σ, or "learned") applies to `likelihood="gaussian"` only;
        `missing_data=True` trains on images whose missing pixels are NaN.
        """
        return cls(*networks.image_networks(input_shape, latent_dim, architecture, likelihood, gaussian_scale,
                                            missing_data=missing_data), **vae_options)

    @property
    def image_shape(self):
        return tuple(self.encoder.image_shape)

    def image_model(self):
        """The VAE of images whose signatures (encode, sample, complete, ...) an export serves: this one.

        A method, not a property: Keras's saving walks properties, and this one returns the model itself.
        """
        return self

    @property
    def latent_dim(self):
        return self.encoder.latent_dim

    @property
    def data_support(self):
        return self.decoder.likelihood.support

    @property
    def missing_data(self):
        """Whether images may mark missing pixels with NaN (the encoder was built to see the mask)."""
        return self.encoder.missing_data

    def _observed(self, images):
        """The 0/1 mask of known pixels for models that take missing data; None (every pixel known) otherwise."""
        return tf.cast(tf.math.is_finite(images), tf.float32) if self.missing_data else None

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

    def _posterior(self, images, condition=None):
        """q(z|x) for a batch; conditional models pass their labels on."""
        return self.encoder(images)

    def _decoder_for(self, condition=None):
        """z -> p(x|z): the decoder, bound to the batch's labels in conditional models."""
        return self.decoder

    def objective_terms(self, images, seed, condition=None, num_samples=None, objective=None, gradient_estimator=None):
        """Per-example terms (`tfvae.objectives.bound_terms`) of the training objective, or of another one."""
        gradient_estimator = gradient_estimator or self.gradient_estimator
        return objectives.bound_terms(
            images,
            self._posterior(images, condition),
            self._decoder_for(condition),
            self.prior(),
            seed,
            objective=objective or self.objective,
            gradient_estimator=gradient_estimator,
            num_samples=num_samples or self.num_samples,
            kl=self.kl,
            beta=self.beta,
            baseline=self.baseline if self.gradient_estimator == "score_function" else 0.0,
            observed=self._observed(images),
        )

    def compute_terms(self, data, seed, training=False):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        condition = labels if self.conditional else None
        return self._updating_baseline(self.objective_terms(images, seed, condition), training)

    def _updating_baseline(self, terms, training):
        if training and self.gradient_estimator == "score_function":
            self.baseline.assign(objectives.updated_baseline(self.baseline, terms["signal"]))
        return terms

    def check_data(self, x, y=None, name="x"):
        check_fit_input(x, self.image_shape, self.data_support, name, allow_missing=self.missing_data)

    def _condition(self, labels, count):
        """`labels` checked for `count` examples, as the networks take them; None for an unconditional model."""
        if labels is not None:
            raise ValueError("This VAE is unconditional and takes no labels. Use tfvae.ConditionalVAE to condition on labels.")

    # Inference ----------------------------------------------------------------

    def call(self, images):
        """The reconstruction mean E[x | z = posterior mean]: tensors only, for predict and serving."""
        return self.decoder(self.encoder(images).mean()).mean()

    def _checked(self, images):
        check_images(images, self.image_shape, self.data_support, allow_missing=self.missing_data)
        return tf.convert_to_tensor(images, tf.float32)

    def encode(self, images, labels=None):
        """The approximate posterior q(z|x) (q(z|x, y) with labels), a `tfd.MultivariateNormalDiag`, batch shape (B,)."""
        images = self._checked(images)
        return self._posterior(images, self._condition(labels, images.shape[0]))

    def decode(self, z, labels=None):
        """The likelihood p(x|z) (p(x|z, y) with labels) for latent codes z of shape (..., latent_dim)."""
        z = tf.convert_to_tensor(z, tf.float32)
        if z.shape.rank is None or z.shape.rank < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"Expected latent codes of shape (..., {self.latent_dim}). Received: shape={tuple(z.shape)}"
            )
        return self._decoder_for(self._condition(labels, z.shape[-2] if z.shape.rank > 1 else None))(z)

    def reconstruct(self, images, labels=None):
        """Reconstruction means E[x | z = posterior mean] for a batch of images."""
        images = self._checked(images)
        condition = self._condition(labels, images.shape[0])
        return self._decoder_for(condition)(self._posterior(images, condition).mean()).mean()

    def sample(self, n, seed=None, mode="mean", labels=None):
        """`n` images generated from the prior: the likelihood's mean, or a draw with mode="sample".

        Conditional models take `labels` (one class for all, or one per image).
        `n` and `seed` may be int tensors (as in the exported `sample` signature).
        """
        if not tf.is_tensor(n):
            check_count("n", n, maximum=MAX_TENSOR_ELEMENTS // math.prod(self.image_shape))
        if mode not in SAMPLE_MODES:
            raise ValueError(f"Unknown mode {mode!r}. Expected one of {sorted(SAMPLE_MODES)}.")
        condition = self._condition(labels, n)
        prior_seed, likelihood_seed = tf.unstack(
            tf.random.experimental.stateless_split(self._seed(seed), 2)
        )
        z = self.prior().sample(n, seed=prior_seed)
        return SAMPLE_MODES[mode](self._decoder_for(condition)(z), likelihood_seed)

    def _data_arrays(self, images, labels):
        """(images,) or (images, labels): what batched inference maps over, checked."""
        check_images(images, self.image_shape, self.data_support, allow_missing=self.missing_data)
        condition = self._condition(labels, len(images))
        return (images,) if condition is None else (images, condition)

    def elbo_terms(self, images, num_samples=None, batch_size=256, seed=None, labels=None):
        """Per-example `elbo`, `reconstruction` and `kl` (nats) as a dict of (N,) tensors."""
        num_samples = self.num_samples if num_samples is None else check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)

        def terms(batch, *condition_and_seed):
            *condition, batch_seed = condition_and_seed
            out = self.objective_terms(batch, batch_seed, *condition, num_samples=num_samples, objective="elbo",
                                       gradient_estimator="reparameterization")
            return {key: out[key] for key in ("elbo", "reconstruction", "kl")}

        arrays = self._data_arrays(images, labels)
        return self._map_batches(self._eval_function(f"elbo{num_samples}", terms), arrays, batch_size, seed)

    def elbo(self, images, num_samples=None, batch_size=256, seed=None, labels=None):
        """Per-example ELBO in nats: a lower bound on log p(x) (on log p(x|y) with labels)."""
        return self.elbo_terms(images, num_samples, batch_size, seed, labels)["elbo"]

    def log_likelihood(self, images, num_samples=5000, batch_size=100, seed=None, progress=None, labels=None):
        """Per-example importance-sampled estimate of log p(x) (log p(x|y) with labels) in nats: the IWAE bound.

        Uses q(z|x) as proposal with `num_samples` (K) draws, evaluated in
        chunks so large K fits in memory; the estimate rises towards log p(x) as K grows.
        For images with missing (NaN) pixels, of a model built with `missing_data`, it estimates log p(x_o).
        `progress` (a stage name) shows a progress bar in a terminal.
        """
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        pixels = math.prod(self.image_shape)
        chunk_size = max(1, min(num_samples, IWAE_CHUNK_ELEMENTS // (batch_size * pixels)))

        def bound(batch, *condition_and_seed):
            *condition, batch_seed = condition_and_seed
            condition = condition[0] if condition else None
            return objectives.iwae_bound(
                batch, self._posterior(batch, condition), self._decoder_for(condition), self.prior(), batch_seed,
                num_samples, chunk_size, observed=self._observed(batch),
            )

        arrays = self._data_arrays(images, labels)
        return self._map_batches(
            self._eval_function(f"iwae{num_samples}-{chunk_size}", bound), arrays, batch_size, seed, progress
        )

    # Completion ---------------------------------------------------------------

    def _completion_arrays(self, images, observed, labels):
        """(images with missing pixels zeroed, 0/1 mask[, labels]), checked; missing pixels may hold NaN.

        Without `observed`, the NaN pixels are the missing ones."""
        if observed is None:
            observed = np.isfinite(np.asarray(images))
            if observed.all():
                raise ValueError(
                    "Nothing to complete: the images hold no NaN. Pass observed, True where a pixel is known "
                    "(e.g. tfvae.masks.make('top_half', image_shape)), or mark the missing pixels with NaN."
                )
        mask = masks.check_observed(observed, images)
        images = np.where(mask > 0, np.asarray(images, np.float32), 0.0).astype(np.float32)
        return (images, mask, *self._data_arrays(images, labels)[1:])

    def _completion_functions(self, condition):
        return (lambda x: self._posterior(x, condition)), self._decoder_for(condition)

    def _chunk_size(self, num_samples, batch_size):
        return max(1, min(num_samples, IWAE_CHUNK_ELEMENTS // (batch_size * math.prod(self.image_shape))))

    def complete(self, images, observed=None, method="importance", num_samples=1000, draws=None, seed=None,
                 batch_size=100, labels=None):
        """Images with their missing pixels filled in from p(x_m | x_o); observed pixels unchanged.

        `observed` is True (or 1) where a pixel is known, of the images' shape or one
        image's (see `tfvae.masks.make`); missing pixels may hold anything, NaN included.
        Without `observed`, the NaN pixels of `images` are the missing ones.
        `method` is "importance" (`num_samples` importance samples), "pseudo_gibbs" or
        "metropolis_within_gibbs" (`num_samples` iterations; see `tfvae.completion`).
        Returns E[x_m | x_o] in the missing pixels, or with `draws=M`, M completions
        drawn from p(x_m | x_o), shape (M, N, H, W, C).
        """
        completion.check_method(method)
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        if draws is not None:
            check_count("draws", draws, maximum=num_samples)
        arrays = self._completion_arrays(images, observed, labels)
        chunk_size = self._chunk_size(num_samples, batch_size)

        def run(batch, mask, *condition_and_seed):
            *condition, batch_seed = condition_and_seed
            encode, decode = self._completion_functions(condition[0] if condition else None)
            if method == "importance":
                mean, drawn = completion.importance(batch, mask, encode, decode, self.prior(), batch_seed, num_samples,
                                                    chunk_size, draws or 0, marks_missing=self.missing_data)
            else:
                mean, drawn = completion.markov_chain(batch, mask, encode, decode, self.prior(), batch_seed, num_samples,
                                                      method == "metropolis_within_gibbs", draws or 0)
            return mean if draws is None else tf.transpose(drawn, [1, 0, 2, 3, 4])  # batches concatenate on axis 0

        key = f"complete-{method}-{num_samples}-{draws}-{chunk_size}"
        result = self._map_batches(self._eval_function(key, run), arrays, batch_size, seed)
        return result if draws is None else tf.transpose(result, [1, 0, 2, 3, 4])

    def conditional_log_likelihood(self, images, observed, num_samples=5000, batch_size=100, seed=None, labels=None):
        """Per-example estimate of log p(x_m | x_o) in nats: log p(x) − log p(x_o), each importance-sampled.

        How well a model completes: higher is better. The missing pixels of `images` must hold their true values.
        """
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        check_images(images, self.image_shape, self.data_support)
        arrays = self._completion_arrays(images, observed, labels)
        arrays = (np.asarray(images, np.float32), *arrays[1:])
        chunk_size = self._chunk_size(num_samples, batch_size)

        def estimate(batch, mask, *condition_and_seed):
            *condition, batch_seed = condition_and_seed
            encode, decode = self._completion_functions(condition[0] if condition else None)
            return completion.conditional_log_likelihood(batch, mask, encode, decode, self.prior(), batch_seed,
                                                         num_samples, chunk_size, objectives.iwae_bound,
                                                         marks_missing=self.missing_data)

        key = f"conditional-iwae-{num_samples}-{chunk_size}"
        return self._map_batches(self._eval_function(key, estimate), arrays, batch_size, seed)

    # Serialization ------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "beta": self.initial_beta,
            "kl": self.kl,
            "num_samples": self.num_samples,
            "objective": self.objective,
            "gradient_estimator": self.gradient_estimator,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
