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
from tfvae.distributions import choose_kl, draw, point
from tfvae.limits import MAX_TENSOR_ELEMENTS, check_count
from tfvae.models.base import BaseVAE
from tfvae.names import KL_ESTIMATORS, RECOGNITION_UPDATES, WAKE_SLEEP, check_choice
from tfvae.priors import StandardNormal, make_prior
from tfvae.validation import check_fit_input, check_images, check_labeled_fit_input, check_labels

tfd = tfp.distributions

SAMPLE_MODES = {
    "mean": lambda likelihood, seed: likelihood.mean(),
    "sample": lambda likelihood, seed: likelihood.sample(seed=seed),
}


def image_parts(input_shape, latent_dim=20, architecture="mlp", likelihood="bernoulli", gaussian_scale=0.1,
                missing_data=False, prior="standard_normal", posterior="diagonal", num_classes=0, hidden_units=None):
    """(encoder, decoder, prior) for images of `input_shape`, as `VAE.for_images` describes them."""
    encoder, decoder = networks.image_networks(input_shape, latent_dim, architecture, likelihood, gaussian_scale,
                                               num_classes, missing_data, posterior, hidden_units)
    return encoder, decoder, make_prior(prior, name="prior") if isinstance(prior, str) else prior


def _check_mode(mode):
    if mode not in SAMPLE_MODES:
        raise ValueError(f"Unknown mode {mode!r}. Expected one of {sorted(SAMPLE_MODES)}.")
    return mode


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
    "monte_carlo". `prior_draw_weight` (0 by default) mixes in Sohn et al.'s term for decoding prior
    draws (`tfvae.objectives.bound_terms`). `fit` reports `loss` (= −bound when β = 1 and no
    prior-draw weight), `reconstruction`, `kl` and `elbo`, in nats per example.

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
    pretrains_image_model = False  # whether `tfvae train` first trains a VAE whose codes the model learns from

    def __init__(
        self,
        encoder,
        decoder,
        prior=None,
        beta=1.0,
        kl="auto",
        num_samples=1,
        objective="elbo",
        gradient_estimator=None,
        prior_draw_weight=0.0,
        recognition_update="wake",
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
        if not (isinstance(prior_draw_weight, (int, float)) and 0 <= prior_draw_weight < 1):
            raise ValueError(f"Expected prior_draw_weight in [0, 1). Received: prior_draw_weight={prior_draw_weight!r}")
        self.prior_draw_weight = float(prior_draw_weight)
        check_count("num_samples", num_samples)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = StandardNormal(name="prior") if prior is None else prior
        self.kl = check_choice("kl", kl, KL_ESTIMATORS)
        self.num_samples = num_samples
        self.objective, self.gradient_estimator = objectives.check_objective(objective, gradient_estimator, num_samples)
        self.recognition_update = check_choice("recognition_update", recognition_update, RECOGNITION_UPDATES)
        if self.objective in WAKE_SLEEP and beta != 1:
            raise ValueError(f"beta weighs the KL term of the ELBO and IWAE bounds; objective={objective!r} takes none. "
                             f"Received: beta={beta!r}")
        if self.objective in WAKE_SLEEP:  # their loss is a surrogate: report the IWAE bound its draws give too
            self.trackers["bound"] = keras.metrics.Mean(name="bound")
        self.initial_beta = float(beta)
        self.beta = keras.Variable(float(beta), trainable=False, name="beta", dtype="float32")
        if self.prior.takes_labels and not self.num_classes:
            raise ValueError(
                f"The prior {type(self.prior).__name__} is p(z|y), for models of labels; this model's networks take no "
                "labels. Build them with num_classes (tfvae.ConditionalVAE), or choose a prior of z alone."
            )
        # q for one blank image (the networks are built): what the estimator and KL choices depend on.
        probe_labels = tf.zeros([1], tf.int32) if self.num_classes else None
        probe = self._posterior(tf.zeros((1, *self.image_shape)), probe_labels)
        if gradient_estimator is None:
            self.gradient_estimator = objectives.default_estimator(self.objective, probe, num_samples)
        objectives.check_reparameterizable(probe, self.gradient_estimator)
        if self.gradient_estimator == "score_function":
            # Running mean of the learning signal, the score-function estimator's control variate.
            self.baseline = keras.Variable(0.0, trainable=False, name="baseline", dtype="float32", aggregation="mean")
        self.build((None, *self.image_shape))
        if self.prior.latent_dim != self.latent_dim:
            raise ValueError(
                f"Expected the prior's latent_dim to be the networks' ({self.latent_dim}). "
                f"Received: latent_dim={self.prior.latent_dim}"
            )
        self.kl_estimator = choose_kl(self.kl, probe, self.prior_distribution(probe_labels))

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
        hidden_units=None,
        **vae_options,
    ):
        """The common case: an MLP or conv encoder/decoder pair for images of `input_shape`.

        `prior` and `posterior` are names in `tfvae.registry` ("standard_normal" or "mixture";
        "diagonal" or "full_covariance") or parts themselves; `gaussian_scale` (a float σ, or
        "learned") applies to `likelihood="gaussian"` only; `missing_data=True` trains on images
        whose missing pixels are NaN; `num_classes` > 0 conditions both networks on a label;
        `hidden_units` (MLP only) sizes both networks' dense layers, e.g. (1024, 1024) [default (400,)].
        """
        encoder, decoder, prior = image_parts(input_shape, latent_dim, architecture, likelihood, gaussian_scale,
                                              missing_data, prior, posterior, num_classes, hidden_units)
        return cls(encoder, decoder, prior=prior, **vae_options)

    @classmethod
    def from_run_config(cls, model, info, seed=None, missing_data=False):
        """The model a run's `ModelConfig` (`model`) describes, for the data `DatasetInfo` (`info`) describes, with
        the run's `seed`."""
        return cls.for_images(info.image_shape, **cls._run_options(model, seed), missing_data=missing_data)

    @staticmethod
    def _run_options(model, seed):
        """The `for_images` options every kind of model takes from a run's `ModelConfig`, and the run's seed."""
        return {
            "seed": seed,
            "latent_dim": model.latent_dim, "architecture": model.architecture, "hidden_units": model.hidden_units,
            "likelihood": model.likelihood,
            "gaussian_scale": model.gaussian_scale, "prior": model.prior, "posterior": model.posterior,
            "beta": model.beta, "kl": model.kl, "num_samples": model.num_samples, "objective": model.objective,
            "gradient_estimator": model.gradient_estimator, "prior_draw_weight": model.prior_draw_weight,
            "recognition_update": model.recognition_update,
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
        """Builds whichever of the encoder, decoder and prior are not built yet (a deserialized part arrives built)."""
        # The networks build themselves from their shapes; only unbuilt parts need it.
        if not self.encoder.built:
            self.encoder.build(input_shape)
        if not self.decoder.built:
            self.decoder.build((None, self.latent_dim))
        if not self.prior.built:
            self.prior.build((self.latent_dim,), num_classes=self.num_classes, image_shape=self.image_shape)
        self.built = True

    # The three distributions ------------------------------------------------------

    def prior_distribution(self, labels=None):
        """p(z) (p(z|y) for each of `labels`, where the prior takes labels): the prior part's distribution, given
        this model's encoder for priors defined through it."""
        return self.prior(encoder=self.encoder, labels=labels)

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
            self.prior_distribution(labels),
            seed,
            objective=objective or self.objective,
            gradient_estimator=gradient_estimator,
            num_samples=num_samples or self.num_samples,
            kl=self.kl_estimator,
            beta=self.beta,
            baseline=self.baseline if self.gradient_estimator == "score_function" else 0.0,
            observed=self._observed(images),
            prior_draw_weight=self.prior_draw_weight,
            encode=lambda x: self._posterior(x, labels),
            recognition_update=self.recognition_update,
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

    def _label_posterior(self, images, per_class):
        """r(y|x), the distribution over an unknown label that bounds sum over: p(y|x) by the bounds, softmax over y
        of log p(y) + ELBO(x|y) from `per_class` (their terms, (C, B)), which makes the bound log Σ_y p(y) e^ELBO(x|y).
        Models with a classifier q(y|x) (M2) use it instead."""
        return tfd.Categorical(logits=tf.transpose(per_class["elbo"]))

    def _class_posterior(self, images):
        """The label posterior (`_label_posterior`) of a float32 batch, from one fixed-seed draw per class."""
        per_class = self.per_class_terms(images, tf.constant([0, 0], tf.int32), objective="elbo",
                                         gradient_estimator="reparameterization")
        return self._label_posterior(images, per_class)

    def _elbo_terms(self, images, seed, labels=None, num_samples=None):
        """Per-example elbo, reconstruction and kl of a float32 batch: given `labels`, or for a model of labels
        without them, with the label summed out (`tfvae.objectives.label_marginal_terms`)."""
        options = {"num_samples": num_samples, "objective": "elbo", "gradient_estimator": "reparameterization"}
        if self._labels_unknown(labels):
            per_class = self.per_class_terms(images, seed, **options)
            terms = objectives.label_marginal_terms(per_class, self._label_posterior(images, per_class))
        else:
            terms = self.objective_terms(images, seed, labels, **options)
        return {key: terms[key] for key in ("elbo", "reconstruction", "kl")}

    def _log_likelihood(self, images, seed, labels, num_samples, chunk_size):
        """The importance-sampled log p(x) (log p(x|y)) of a float32 batch; for a model of labels without them,
        log Σ_y p(y) p̂(x|y), every class's estimate from its own `num_samples` draws."""
        if not self._labels_unknown(labels):
            return objectives.iwae_bound(images, self._posterior(images, labels), self._decoder_for(labels),
                                         self.prior_distribution(labels), seed, num_samples, chunk_size,
                                         observed=self._observed(images))
        num_classes, batch = self.num_classes, tf.shape(images)[0]
        tiled = tf.tile(images, tf.concat([[num_classes], tf.ones([tf.rank(images) - 1], tf.int32)], 0))
        per_pair = self._log_likelihood(tiled, seed, tf.repeat(tf.range(num_classes), batch), num_samples, chunk_size)
        return tf.reduce_logsumexp(tf.reshape(per_pair, [num_classes, batch]), axis=0) - math.log(num_classes)

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

    def _checked_labels(self, labels, count, required=True):
        """`labels` checked for `count` examples as the networks take them; None for a model of images alone, or
        (where not `required`) for a model of labels asked without them, which then sums over the label."""
        if not self.num_classes:
            if labels is not None:
                raise ValueError(
                    "This VAE is unconditional and takes no labels. Use tfvae.ConditionalVAE to condition on labels."
                )
            return None
        if labels is None and not required:
            return None
        return check_labels(labels, count, self.num_classes)

    def _labels_unknown(self, labels):
        """Whether this is a model of labels asked without them: it then sums over every class."""
        return bool(self.num_classes) and labels is None

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
        """The approximate posterior q(z|x) (q(z|x, y) with labels), a `tfd` distribution with batch shape (B,).

        A model of labels without `labels` encodes each image given its likeliest class.
        """
        images = self._checked(images)
        labels = self._checked_labels(labels, images.shape[0], required=False)
        if self._labels_unknown(labels):
            labels = self._class_posterior(images).mode()
        return self._posterior(images, labels)

    def decode(self, z, labels=None):
        """The likelihood p(x|z) (p(x|z, y) with labels) for latent codes z of shape (..., latent_dim)."""
        z = self._checked_codes(z)
        return self._decoder_for(self._checked_labels(labels, z.shape[-2] if z.shape.rank > 1 else None))(z)

    def _checked_codes(self, z):
        """Latent codes `z` as a float32 tensor, or a ValueError unless their last axis is `latent_dim`."""
        z = tf.convert_to_tensor(z, tf.float32)
        if z.shape.rank is None or z.shape.rank < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"Expected latent codes of shape (..., {self.latent_dim}). Received: shape={tuple(z.shape)}"
            )
        return z

    def reconstruct(self, images, labels=None):
        """Reconstruction means E[x | z = the posterior's point code] for a batch of images (a model of labels
        without `labels`: given each image's likeliest class)."""
        images = self._checked(images)
        return self._reconstruction(images, self._checked_labels(labels, images.shape[0], required=False))

    def sample(self, n, seed=None, mode="mean", labels=None):
        """`n` images generated from the prior: the likelihood's mean, or a draw with mode="sample".

        A model of labels takes `labels` (one class for all, or one per image); without them it draws each
        image's class from p(y), uniform. `n` and `seed` may be int tensors (as in the exported `sample` signature).
        """
        if not tf.is_tensor(n):
            check_count("n", n, maximum=MAX_TENSOR_ELEMENTS // math.prod(self.image_shape))
        _check_mode(mode)
        labels = self._checked_labels(labels, n, required=False)
        label_seed, prior_seed, likelihood_seed = tf.unstack(tf.random.experimental.stateless_split(self._seed(seed), 3))
        if self._labels_unknown(labels):
            labels = tf.random.stateless_uniform([n], label_seed, maxval=self.num_classes, dtype=tf.int32)
        z = draw(self.prior_distribution(labels), n, prior_seed)  # (n, latent_dim)
        return SAMPLE_MODES[mode](self._decoder_for(labels)(z), likelihood_seed)

    def sample_from(self, z, seed=None, mode="mean", labels=None):
        """Images decoded from latent codes `z` (n, latent_dim): the likelihood's mean, or a draw with mode="sample"."""
        return SAMPLE_MODES[_check_mode(mode)](self._decoder_for(labels)(self._checked_codes(z)), self._seed(seed))

    def _data_arrays(self, images, labels):
        """(images,) or (images, labels): what batched inference maps over, checked (labels may be left out of a
        model of labels, which then sums over them)."""
        check_images(images, self.image_shape, self.data_support, allow_missing=self.missing_data)
        labels = self._checked_labels(labels, len(images), required=False)
        return (images,) if labels is None else (images, labels)

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
        drawn from p(x_m | x_o), shape (M, N, H, W, C). A model of labels without `labels`
        completes from Σ_y p(y | x_o) p(x_m | x_o, y): each class's completion, weighted by
        p(y | x_o) ∝ p(y) p(x_o | y) (importance-sampled).
        """
        completion.check_method(method)
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        if draws is not None:
            check_count("draws", draws, maximum=num_samples)
        arrays = self._completion_arrays(images, observed, labels)
        if self._labels_unknown(labels):
            return self._complete_over_labels(arrays, method, num_samples, draws, seed, batch_size)
        chunk_size = self._chunk_size(num_samples, batch_size)

        def run(batch, mask, *labels_and_seed):
            *labels, batch_seed = labels_and_seed
            labels = labels[0] if labels else None
            encode, decode = self._completion_functions(labels)
            prior = self.prior_distribution(labels)
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

    def _each_label(self, count):
        """For every class of a model of labels, the labels of `count` examples all of that class."""
        return [np.full(count, c, np.int32) for c in range(self.num_classes)]

    def _complete_over_labels(self, arrays, method, num_samples, draws, seed, batch_size):
        """`complete` for a model of labels with the label unknown: the mixture over classes."""
        images, mask = arrays
        observed = np.stack([self._log_likelihoods(images, mask, labels, num_samples, batch_size, seed, observed_only=True)
                             ["observed"] for labels in self._each_label(len(images))], axis=1)  # (N, C): log p(x_o | y)
        weights = tf.nn.softmax(observed, axis=1).numpy()  # p(y | x_o), p(y) uniform
        per_class = np.stack([self.complete(images, mask, method, num_samples, draws, seed, batch_size, labels).numpy()
                              for labels in self._each_label(len(images))], axis=-5)  # (C, N, ...) or (M, C, N, ...)
        if draws is None:  # observed pixels are as given, not a weighted sum of copies of them
            return tf.constant(np.where(mask > 0, images, np.einsum("nc,cn...->n...", weights, per_class)))
        rng = np.random.default_rng(self._seed(seed).numpy())
        chosen = np.stack([[rng.choice(self.num_classes, p=w / w.sum()) for w in weights] for _ in range(draws)])  # (M, N)
        drawn = np.take_along_axis(per_class, chosen[:, None, :, None, None, None], axis=1)[:, 0]
        return tf.constant(drawn)

    def _log_likelihoods(self, images, mask, labels, num_samples, batch_size, seed, observed_only=False):
        """{"full": log p̂(x), "observed": log p̂(x_o)} of complete `images` given `labels` (`completion.log_likelihoods`);
        with `observed_only`, {"observed": ...} alone, for images whose missing pixels may hold anything."""
        chunk_size = self._chunk_size(num_samples, batch_size)

        def estimate(batch, batch_mask, *labels_and_seed):
            *labels, batch_seed = labels_and_seed
            labels = labels[0] if labels else None
            encode, decode = self._completion_functions(labels)
            arguments = (batch, batch_mask, encode, decode, self.prior_distribution(labels), batch_seed, num_samples,
                         chunk_size, objectives.iwae_bound, self.missing_data)
            if observed_only:
                return {"observed": completion.observed_log_likelihood(*arguments)}
            full, observed = completion.log_likelihoods(*arguments)
            return {"full": full, "observed": observed}

        arrays = (images, mask) if labels is None else (images, mask, labels)
        key = f"completion-iwae-{num_samples}-{chunk_size}-{len(arrays)}-{'observed' if observed_only else 'both'}"
        return self._map_batches(self._eval_function(key, estimate), arrays, batch_size, seed)

    def completion_log_likelihood(self, images, observed, num_samples=5000, batch_size=100, seed=None, labels=None):
        """Per-example estimate of log p(x_m | x_o) in nats: log p(x) − log p(x_o), each importance-sampled.

        How well a model completes: higher is better. The missing pixels of `images` must hold their true values.
        A model of labels without `labels` sums each over the label: log Σ_y p(y) p(x|y) − log Σ_y p(y) p(x_o|y).
        """
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        check_images(images, self.image_shape, self.data_support)
        _, mask, *given = self._completion_arrays(images, observed, labels)
        images = np.asarray(images, np.float32)
        if not self._labels_unknown(labels):
            both = self._log_likelihoods(images, mask, given[0] if given else None, num_samples, batch_size, seed)
            return both["full"] - both["observed"]
        each = [self._log_likelihoods(images, mask, labels, num_samples, batch_size, seed)
                for labels in self._each_label(len(images))]
        total = lambda key: tf.reduce_logsumexp(tf.stack([both[key] for both in each]), axis=0)
        return total("full") - total("observed")

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
            "prior_draw_weight": self.prior_draw_weight,
            "recognition_update": self.recognition_update,
        }
