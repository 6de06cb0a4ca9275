"""The Variational Autoencoder: a `keras.Model` made of three distributions and trained on a bound on log p(x).

Its parts are an encoder q(z|x) (`tfvae.networks.Encoder`, with a posterior head from `tfvae.posteriors`),
a decoder p(x|z) (`tfvae.networks.Decoder`, with a likelihood head from `tfvae.likelihoods`) and a prior
p(z) (`tfvae.priors`). Networks built with `num_classes` take labels as data: q(z|x, y) and p(x|z, y), so
the same class is the conditional VAE. `call` returns the reconstruction mean only, so `predict` and
SavedModel signatures see tensors.
"""

import math
import warnings

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import completion, masks, networks, objectives
from tfvae.distributions import choose_kl, point, sample
from tfvae.limits import MAX_TENSOR_ELEMENTS, check_count
from tfvae.models.base import BaseVAE
from tfvae.names import KL_ESTIMATORS, check_choice
from tfvae.priors import StandardNormal, make_prior
from tfvae.validation import check_fit_input, check_images, check_labeled_fit_input, check_labels

# Elements (samples x batch x pixels) of one importance-sampling chunk: bounds memory for large K, and at
# 2**21 (8 MB) ran 1.2x faster under XLA on CPU than at 2**24 (benchmarks/evaluation_throughput.py).
IWAE_CHUNK_ELEMENTS = 2**21

tfd = tfp.distributions

SAMPLE_MODES = {
    "mean": lambda likelihood, seed: likelihood.mean(),
    "sample": lambda likelihood, seed: likelihood.sample(seed=seed),
}


def image_parts(input_shape, latent_dim=20, architecture="mlp", likelihood="bernoulli", gaussian_scale=0.1,
                missing_data=False, prior="standard_normal", posterior="diagonal", num_classes=0):
    """(encoder, decoder, prior) for images of `input_shape`, as `VAE.for_images` describes them."""
    encoder, decoder = networks.image_networks(input_shape, latent_dim, architecture, likelihood, gaussian_scale,
                                               num_classes, missing_data, posterior)
    return encoder, decoder, make_prior(prior, name="prior") if isinstance(prior, str) else prior


@keras.saving.register_keras_serializable(package="tfvae")
class VAE(BaseVAE):
    """Variational Autoencoder (Kingma & Welling, 2013): p(z) p(x|z) with an approximate posterior q(z|x).

    `prior` is a `tfvae.priors` part (default `StandardNormal()`, N(0, I)). Training maximizes
    `objective` with `num_samples` (K) draws z ~ q(z|x) per example: "elbo",
    E_q[log p(x|z)] - KL(q(z|x) || p(z)) (the default), or "iwae", the importance-weighted bound
    log (1/K) Σ_k p(x, z_k)/q(z_k|x) (Burda et al. 2015). `gradient_estimator`
    ("reparameterization", the default z = μ + σ·ε; "score_function"; "doubly_reparameterized";
    "vimco") says how its gradient is estimated (see `tfvae.objectives`). `beta` weighs the KL
    term (a non-trainable variable, so callbacks such as `KLWarmup` can anneal it); `kl` is
    "auto" (closed form where the posterior and prior have one, else Monte Carlo), "analytic" or
    "monte_carlo". `fit` reports `loss` (= −bound when β = 1), `reconstruction`, `kl` and `elbo`,
    in nats per example.

    With networks built for `num_classes` classes the model is conditional (Sohn et al. 2015):
    `fit` takes (images, integer labels) and every method takes `labels=`, e.g. `sample(10,
    labels=7)`. Built with `missing_data=True` (its encoder's setting), the model trains on
    images whose missing pixels are NaN: bounds count the observed pixels only, so they bound
    log p(x_o), and the encoder sees the zero-filled image and its mask (MIWAE, Mattei &
    Frellsen 2019).

    #### Example
    ```python
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20)
    vae.compile()                      # Adam(1e-3), XLA on
    vae.fit(x_train, epochs=10, validation_data=(x_test,))
    ```
    """

    parts = ("encoder", "decoder", "prior")
    allows_unlabeled = False  # whether label −1 (unknown) may appear in training data
    run_uses_labels = False  # whether `tfvae train` loads labels for this kind of model

    def __init__(
        self,
        encoder,
        decoder,
        prior=None,
        beta=1.0,
        kl="auto",
        num_samples=1,
        objective="elbo",
        gradient_estimator="reparameterization",
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        for shared in ("latent_dim", "image_shape", "num_classes"):
            if np.any(np.asarray(getattr(encoder, shared)) != np.asarray(getattr(decoder, shared))):
                raise ValueError(
                    f"Expected the encoder and decoder to share {shared}. Received: "
                    f"encoder.{shared}={getattr(encoder, shared)}, decoder.{shared}={getattr(decoder, shared)}"
                )
        if not (isinstance(beta, (int, float)) and beta >= 0):
            raise ValueError(f"Expected beta >= 0. Received: beta={beta!r}")
        check_count("num_samples", num_samples)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = StandardNormal(name="prior") if prior is None else prior
        self.kl = check_choice("kl", kl, KL_ESTIMATORS)
        self.num_samples = num_samples
        self.objective, self.gradient_estimator = objectives.check_objective(objective, gradient_estimator, num_samples)
        self.initial_beta = float(beta)
        self.beta = keras.Variable(float(beta), trainable=False, name="beta", dtype="float32")
        if self.gradient_estimator == "score_function":
            # Running mean of the learning signal, the score-function estimator's control variate.
            self.baseline = keras.Variable(0.0, trainable=False, name="baseline", dtype="float32", aggregation="mean")
        self.build((None, *self.image_shape))
        probe = self._posterior(tf.zeros((1, *self.image_shape)))
        objectives.check_reparameterizable(probe, self.gradient_estimator)
        self.kl_estimator = choose_kl(self.kl, probe, self.prior_distribution())

    @classmethod
    def for_images(
        cls,
        input_shape,
        latent_dim=20,
        architecture="mlp",
        likelihood="bernoulli",
        gaussian_scale=0.1,
        missing_data=False,
        prior="standard_normal",
        posterior="diagonal",
        num_classes=0,
        **vae_options,
    ):
        """The common case: an MLP or conv encoder/decoder pair for images of `input_shape`.

        `prior` and `posterior` are names in `tfvae.registry` ("standard_normal" or "mixture";
        "diagonal" or "full_covariance") or parts themselves; `gaussian_scale` (a float σ, or
        "learned") applies to `likelihood="gaussian"` only; `missing_data=True` trains on images
        whose missing pixels are NaN; `num_classes` > 0 conditions both networks on a label.
        """
        encoder, decoder, prior = image_parts(input_shape, latent_dim, architecture, likelihood, gaussian_scale,
                                              missing_data, prior, posterior, num_classes)
        return cls(encoder, decoder, prior=prior, **vae_options)

    @classmethod
    def from_run_config(cls, model, info, missing_data=False):
        """The model a run's `ModelConfig` (`model`) describes, for the data `DatasetInfo` (`info`) describes."""
        return cls.for_images(info.image_shape, **cls._run_options(model), missing_data=missing_data)

    @staticmethod
    def _run_options(model):
        """The `for_images` options every kind of model takes from a run's `ModelConfig`."""
        return {
            "latent_dim": model.latent_dim, "architecture": model.architecture, "likelihood": model.likelihood,
            "gaussian_scale": model.gaussian_scale, "prior": model.prior, "posterior": model.posterior,
            "beta": model.beta, "kl": model.kl, "num_samples": model.num_samples, "objective": model.objective,
            "gradient_estimator": model.gradient_estimator,
        }

    @property
    def image_shape(self):
        return tuple(self.encoder.image_shape)

    @property
    def num_classes(self):
        """The classes the networks are conditioned on: 0 for a model of images alone."""
        return self.encoder.num_classes

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
        # The networks build themselves from their shapes; only unbuilt parts need it.
        if not self.encoder.built:
            self.encoder.build(input_shape)
        if not self.decoder.built:
            self.decoder.build((None, self.latent_dim))
        if not self.prior.built:
            self.prior.build((self.latent_dim,))
        self.built = True

    # The three distributions ------------------------------------------------------

    def prior_distribution(self):
        """p(z), the distribution the prior part gives (with this model's encoder, for priors defined through it)."""
        return self.prior(encoder=self.encoder)

    def _posterior(self, images, labels=None):
        """q(z|x) (q(z|x, y) with labels) for a batch of float32 images, unchecked."""
        if self.num_classes and labels is None:  # only while the model is built, before any labels exist
            labels = tf.zeros(tf.shape(images)[:1], tf.int32)
        return self.encoder(images, labels)

    def _decoder_for(self, labels=None):
        """z -> p(x|z): the decoder, bound to the batch's labels in a model of labels."""
        return lambda z: self.decoder(z, labels)

    # Training -----------------------------------------------------------------

    def objective_terms(self, images, seed, labels=None, num_samples=None, objective=None, gradient_estimator=None):
        """Per-example terms (`tfvae.objectives.bound_terms`) of the training objective, or of another one."""
        gradient_estimator = gradient_estimator or self.gradient_estimator
        return objectives.bound_terms(
            images,
            self._posterior(images, labels),
            self._decoder_for(labels),
            self.prior_distribution(),
            seed,
            objective=objective or self.objective,
            gradient_estimator=gradient_estimator,
            num_samples=num_samples or self.num_samples,
            kl=self.kl_estimator,
            beta=self.beta,
            baseline=self.baseline if self.gradient_estimator == "score_function" else 0.0,
            observed=self._observed(images),
        )

    def compute_terms(self, data, seed, training=False):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._updating_baseline(self.objective_terms(images, seed, self.labels_used(labels)), training)

    def per_class_terms(self, images, seed, **options):
        """`objective_terms` of every (class, example) pair in one batched pass: a dict of (num_classes, B) tensors.

        The images are tiled once per class, with labels 0..C-1 each repeated B times, so the sum over an
        unknown label is exact (never a sample of y).
        """
        num_classes, batch = self.num_classes, tf.shape(images)[0]
        tiled = tf.tile(images, tf.concat([[num_classes], tf.ones([tf.rank(images) - 1], tf.int32)], 0))
        per_pair = self.objective_terms(tiled, seed, tf.repeat(tf.range(num_classes), batch), **options)
        return {name: tf.reshape(value, [num_classes, batch]) for name, value in per_pair.items()}

    def _class_posterior(self, images):
        """p(y|x) for a model of labels, by its bounds: softmax over y of log p(y) + ELBO(x|y) (uniform p(y),
        one fixed-seed draw per class), a `tfd.Categorical` with batch shape (B,). Models with a classifier
        q(y|x) (M2) give that instead."""
        elbo = self.per_class_terms(images, tf.constant([0, 0], tf.int32), objective="elbo",
                                    gradient_estimator="reparameterization")["elbo"]
        return tfd.Categorical(logits=tf.transpose(elbo))

    def _updating_baseline(self, terms, training):
        if training and self.gradient_estimator == "score_function":
            self.baseline.assign(objectives.updated_baseline(self.baseline, terms["signal"]))
        return terms

    def check_data(self, x, y=None, name="x"):
        if self.num_classes:
            check_labeled_fit_input(x, y, self.image_shape, self.data_support, self.num_classes, name,
                                    allow_missing=self.missing_data, allow_unlabeled=self.allows_unlabeled)
        else:
            check_fit_input(x, self.image_shape, self.data_support, name, allow_missing=self.missing_data)

    def labels_used(self, labels):
        """`labels` if this model is conditioned on labels, else None: how library code that holds labels
        (evaluation, pictures, the command line) hands them to any model."""
        return labels if self.num_classes else None

    def _checked_labels(self, labels, count):
        """`labels` checked for `count` examples as the networks take them; None for a model of images alone."""
        if not self.num_classes:
            if labels is not None:
                raise ValueError(
                    "This VAE is unconditional and takes no labels. Use tfvae.ConditionalVAE to condition on labels."
                )
            return None
        return check_labels(labels, count, self.num_classes)

    # Inference ----------------------------------------------------------------

    def call(self, inputs, labels=None):
        """The reconstruction mean E[x | z = the posterior's point code]: tensors only, for predict and serving.

        A model of labels takes (images, labels), as a pair or as two arguments.
        """
        images, labels = inputs if isinstance(inputs, (tuple, list)) else (inputs, labels)
        return self._reconstruction(images, labels)

    def _reconstruction(self, images, labels=None):
        """E[x | z = point(q(z|x))], given `labels`, or for a model of labels without them, its likeliest class."""
        if self.num_classes and labels is None:
            labels = self._class_posterior(images).mode()
        return self._decoder_for(labels)(point(self._posterior(images, labels))).mean()

    def _checked(self, images):
        check_images(images, self.image_shape, self.data_support, allow_missing=self.missing_data)
        return tf.convert_to_tensor(images, tf.float32)

    def encode(self, images, labels=None):
        """The approximate posterior q(z|x) (q(z|x, y) with labels), a `tfd` distribution with batch shape (B,)."""
        images = self._checked(images)
        return self._posterior(images, self._checked_labels(labels, images.shape[0]))

    def decode(self, z, labels=None):
        """The likelihood p(x|z) (p(x|z, y) with labels) for latent codes z of shape (..., latent_dim)."""
        z = tf.convert_to_tensor(z, tf.float32)
        if z.shape.rank is None or z.shape.rank < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"Expected latent codes of shape (..., {self.latent_dim}). Received: shape={tuple(z.shape)}"
            )
        return self._decoder_for(self._checked_labels(labels, z.shape[-2] if z.shape.rank > 1 else None))(z)

    def reconstruct(self, images, labels=None):
        """Reconstruction means E[x | z = the posterior's point code] for a batch of images."""
        images = self._checked(images)
        return self._reconstruction(images, self._checked_labels(labels, images.shape[0]))

    def sample(self, n, seed=None, mode="mean", labels=None):
        """`n` images generated from the prior: the likelihood's mean, or a draw with mode="sample".

        A model of labels takes `labels` (one class for all, or one per image).
        `n` and `seed` may be int tensors (as in the exported `sample` signature).
        """
        if not tf.is_tensor(n):
            check_count("n", n, maximum=MAX_TENSOR_ELEMENTS // math.prod(self.image_shape))
        if mode not in SAMPLE_MODES:
            raise ValueError(f"Unknown mode {mode!r}. Expected one of {sorted(SAMPLE_MODES)}.")
        labels = self._checked_labels(labels, n)
        prior_seed, likelihood_seed = tf.unstack(tf.random.experimental.stateless_split(self._seed(seed), 2))
        z = sample(self.prior_distribution(), n, prior_seed)  # (n, latent_dim)
        return SAMPLE_MODES[mode](self._decoder_for(labels)(z), likelihood_seed)

    def _data_arrays(self, images, labels):
        """(images,) or (images, labels): what batched inference maps over, checked."""
        check_images(images, self.image_shape, self.data_support, allow_missing=self.missing_data)
        labels = self._checked_labels(labels, len(images))
        return (images,) if labels is None else (images, labels)

    def elbo_terms(self, images, num_samples=None, batch_size=256, seed=None, labels=None):
        """Per-example `elbo`, `reconstruction` and `kl` (nats) as a dict of (N,) tensors."""
        num_samples = self.num_samples if num_samples is None else check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)

        def terms(batch, *labels_and_seed):
            *labels, batch_seed = labels_and_seed
            out = self.objective_terms(batch, batch_seed, *labels, num_samples=num_samples, objective="elbo",
                                       gradient_estimator="reparameterization")
            return {key: out[key] for key in ("elbo", "reconstruction", "kl")}

        arrays = self._data_arrays(images, labels)
        return self._map_batches(self._eval_function(f"elbo{num_samples}", terms), arrays, batch_size, seed)

    def elbo(self, images, num_samples=None, batch_size=256, seed=None, labels=None):
        """Per-example ELBO in nats: a lower bound on log p(x) (on log p(x|y) with labels)."""
        return self.elbo_terms(images, num_samples, batch_size, seed, labels)["elbo"]

    def _chunk_size(self, num_samples, batch_size):
        """Importance samples evaluated at once, so that a chunk holds about `IWAE_CHUNK_ELEMENTS` pixels."""
        return max(1, min(num_samples, IWAE_CHUNK_ELEMENTS // (batch_size * math.prod(self.image_shape))))

    def log_likelihood(self, images, num_samples=5000, batch_size=100, seed=None, progress=None, labels=None):
        """Per-example importance-sampled estimate of log p(x) (log p(x|y) with labels) in nats: the IWAE bound.

        Uses q(z|x) as proposal with `num_samples` (K) draws, evaluated in
        chunks so large K fits in memory; the estimate rises towards log p(x) as K grows.
        For images with missing (NaN) pixels, of a model built with `missing_data`, it estimates log p(x_o).
        `progress` (a stage name) shows a progress bar in a terminal.
        """
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        chunk_size = self._chunk_size(num_samples, batch_size)

        def bound(batch, *labels_and_seed):
            *labels, batch_seed = labels_and_seed
            labels = labels[0] if labels else None
            return objectives.iwae_bound(
                batch, self._posterior(batch, labels), self._decoder_for(labels), self.prior_distribution(), batch_seed,
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

    def _completion_functions(self, labels):
        return (lambda x: self._posterior(x, labels)), self._decoder_for(labels)

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

        def run(batch, mask, *labels_and_seed):
            *labels, batch_seed = labels_and_seed
            encode, decode = self._completion_functions(labels[0] if labels else None)
            prior = self.prior_distribution()
            if method == "importance":
                mean, drawn = completion.importance(batch, mask, encode, decode, prior, batch_seed, num_samples,
                                                    chunk_size, draws or 0, marks_missing=self.missing_data)
            else:
                mean, drawn = completion.markov_chain(batch, mask, encode, decode, prior, batch_seed, num_samples,
                                                      method == "metropolis_within_gibbs", draws or 0)
            return mean if draws is None else tf.transpose(drawn, [1, 0, 2, 3, 4])  # batches concatenate on axis 0

        key = f"complete-{method}-{num_samples}-{draws}-{chunk_size}"
        result = self._map_batches(self._eval_function(key, run), arrays, batch_size, seed)
        return result if draws is None else tf.transpose(result, [1, 0, 2, 3, 4])

    def completion_log_likelihood(self, images, observed, num_samples=5000, batch_size=100, seed=None, labels=None):
        """Per-example estimate of log p(x_m | x_o) in nats: log p(x) − log p(x_o), each importance-sampled.

        How well a model completes: higher is better. The missing pixels of `images` must hold their true values.
        """
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        check_images(images, self.image_shape, self.data_support)
        arrays = self._completion_arrays(images, observed, labels)
        arrays = (np.asarray(images, np.float32), *arrays[1:])
        chunk_size = self._chunk_size(num_samples, batch_size)

        def estimate(batch, mask, *labels_and_seed):
            *labels, batch_seed = labels_and_seed
            encode, decode = self._completion_functions(labels[0] if labels else None)
            return completion.completion_log_likelihood(batch, mask, encode, decode, self.prior_distribution(),
                                                        batch_seed, num_samples, chunk_size, objectives.iwae_bound,
                                                        marks_missing=self.missing_data)

        key = f"completion-iwae-{num_samples}-{chunk_size}"
        return self._map_batches(self._eval_function(key, estimate), arrays, batch_size, seed)

    def conditional_log_likelihood(self, *args, **kwargs):
        """Deprecated name of `completion_log_likelihood` ("conditional" now names models of labels)."""
        warnings.warn("conditional_log_likelihood is deprecated; use completion_log_likelihood.", DeprecationWarning,
                      stacklevel=2)
        return self.completion_log_likelihood(*args, **kwargs)

    # Serialization ------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "beta": self.initial_beta,
            "kl": self.kl,
            "num_samples": self.num_samples,
            "objective": self.objective,
            "gradient_estimator": self.gradient_estimator,
        }
