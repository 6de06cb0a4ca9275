"""Model M1+M2 of Kingma, Rezende, Mohamed & Welling (2014): M2 on the latent codes of a trained VAE.

A trained VAE (M1), kept frozen, maps each image to its posterior q(z1|x); model M2
learns p(z1|y, z2) and q(y|z1) from draws z1 ~ q(z1|x), a fresh draw every step as
in the paper, and classifies an image by q(y | z1 = E[z1|x]). M1 learns from every
image without labels; M2 then separates classes in M1's code space rather than in
pixels (benchmarks/RESULTS.md measures what that gains).
"""

import os

import keras
import tensorflow as tf

from tfvae import networks, objectives
from tfvae.distributions import RANDOM_ALGORITHM, image_log_prob, point, sample
from tfvae.models.base import BaseVAE
from tfvae.models.semi_supervised import SemiSupervisedVAE, classification_accuracy
from tfvae.models.vae import VAE
from tfvae.validation import check_fit_input, check_images, check_labeled_fit_input, check_labels

# Draws of z2 (per class) behind M2's estimate of the density of one code, in M1+M2's log-likelihood; and
# draws of z1 taken at once (each costs M2's whole estimate, so fewer than a VAE's chunk).
CODE_SAMPLES = 10
CODE_CHUNK = 4


class _CodeDensity:
    """log p̂(z1) of M1 codes (K, B, latent) by M2's importance-sampled log-likelihood: the prior over z1 that
    `objectives.iwae_bound` weighs M1's draws by."""

    def __init__(self, stacked, seed, labels):
        self.stacked, self.seed, self.labels = stacked, seed, labels

    def log_prob(self, z1):
        draws = tf.shape(z1)[0]
        labels = None if self.labels is None else tf.tile(self.labels, [draws])
        codes = self.stacked._as_codes(z1)
        log_density = self.stacked.m2._log_likelihood(codes, self.seed, labels, CODE_SAMPLES, CODE_SAMPLES)
        return tf.reshape(log_density, tf.shape(z1)[:-1])


@keras.saving.register_keras_serializable(package="tfvae")
class StackedSemiSupervisedVAE(BaseVAE):
    """M1+M2: `fit` on (images, labels) with −1 marking unlabeled examples, as `SemiSupervisedVAE`.

    `m1` is a trained, unconditional `tfvae.VAE` (this model sets `m1.trainable = False`);
    `m2` a `SemiSupervisedVAE` over codes of shape (1, 1, m1.latent_dim), as `on_codes_of`
    builds it. `classify(images)` is q(y | E[z1|x]); `fit` and `evaluate` report M2's
    terms (in nats per code) and, in `evaluate`, the accuracy of `classify` on labeled examples.
    """

    tracked = SemiSupervisedVAE.tracked
    parts = ("m1", "m2")
    allows_unlabeled = True  # label −1 marks an unlabeled example
    missing_data = False  # M2's classifier needs whole images
    run_uses_labels = True
    pretrains_image_model = True  # `tfvae train` trains M1 first (`tfvae.training`)
    weight_averaging = SemiSupervisedVAE.weight_averaging  # M2's classifier, on codes

    def __init__(self, m1, m2, **kwargs):
        if not isinstance(m1, VAE) or not isinstance(m2, SemiSupervisedVAE):
            raise TypeError(
                "Expected m1 to be a trained tfvae.VAE and m2 a tfvae.SemiSupervisedVAE. "
                f"Received: m1={type(m1).__name__}, m2={type(m2).__name__}"
            )
        if m1.num_classes or m1.missing_data:
            raise ValueError(
                "Expected m1 to be an unconditional VAE of whole images: its codes of every image are M2's data. "
                f"Received: m1={type(m1).__name__} with missing_data={m1.missing_data}"
            )
        code_shape = (1, 1, m1.latent_dim)
        if tuple(m2.image_shape) != code_shape:
            raise ValueError(
                f"Expected m2 to take M1's codes, of shape {code_shape}. Received: m2.image_shape={m2.image_shape}. "
                "Build the pair with StackedSemiSupervisedVAE.on_codes_of(m1, num_classes)."
            )
        super().__init__(**kwargs)
        # Keras skips the `trainable` setter when the flag already reads False (as on a loaded M1),
        # which would leave sublayers built after it trainable: freeze every layer itself.
        for layer in m1._flatten_layers():
            keras.layers.Layer.trainable.fset(layer, False)
        self.m1 = m1
        self.m2 = m2
        self.built = True

    @classmethod
    def on_codes_of(cls, m1, num_classes, latent_dim=50, hidden_units=(500,), alpha=10.0, bound_weighting="data",
                    seed=None, **m2_options):
        """M2 with MLP networks of `hidden_units` on the codes of the trained VAE `m1` (or the run directory or
        .keras file that holds it), as in the paper.

        p(z1|y, z2) is Gaussian with a σ learned per code dimension (`FeatureGaussianLikelihood`);
        z2 has `latent_dim` dimensions. `m2_options` (beta, objective, num_samples, ...) go to M2.
        """
        networks.check_num_classes(num_classes, minimum=2)
        if isinstance(m1, (str, os.PathLike)):
            from tfvae.checkpoints import load_model

            m1 = load_model(m1)
        if not isinstance(m1, VAE):
            raise TypeError(f"Expected m1 to be a trained tfvae.VAE, or a path to one. Received: {type(m1).__name__}")
        code_shape = (1, 1, m1.latent_dim)  # M1's codes as one-pixel images of latent_dim channels
        m2 = SemiSupervisedVAE(
            networks.mlp_encoder(code_shape, latent_dim, hidden_units, num_classes=num_classes),
            networks.mlp_decoder(code_shape, latent_dim, hidden_units, likelihood="feature-gaussian",
                                 num_classes=num_classes),
            networks.mlp_classifier(code_shape, num_classes, hidden_units),
            alpha=alpha,
            bound_weighting=bound_weighting,
            seed=seed,
            **m2_options,
        )
        return cls(m1, m2, seed=seed)

    @classmethod
    def from_run_config(cls, model, info, seed=None, missing_data=False, m1=None):
        """M1+M2 as a run's `ModelConfig` (`model`) describes it, on the codes of `m1`, the VAE the run trained
        first (`tfvae.training`); the labeled share comes from the data `info` describes."""
        del missing_data  # refused by the run configuration: a classifier needs whole images
        stacked = cls.on_codes_of(m1, info.num_classes, latent_dim=model.latent_dim, alpha=model.alpha,
                                  bound_weighting=model.bound_weighting, beta=model.beta, kl=model.kl,
                                  num_samples=model.num_samples, objective=model.objective,
                                  gradient_estimator=model.gradient_estimator, seed=seed)
        stacked.labeled_fraction = info.num_labeled / info.num_examples
        return stacked

    def image_model(self):
        """M1, the VAE of images: its signatures (encode, sample, complete, ...) are served beside `classify`."""
        return self.m1

    @property
    def image_shape(self):
        return self.m1.image_shape

    @property
    def data_support(self):
        return self.m1.data_support

    @property
    def num_classes(self):
        return self.m2.num_classes

    @property
    def labeled_fraction(self):
        return self.m2.labeled_fraction

    @labeled_fraction.setter
    def labeled_fraction(self, value):
        self.m2.labeled_fraction = value

    @property
    def num_samples(self):
        return self.m2.num_samples

    def labels_used(self, labels):
        """No labels: M1, the model of images, takes none (M2 learns them from its codes)."""
        del labels

    # The model of images: M1's p(x|z1), with M2's p(z1) = Σ_y p(y) ∫ p(z2) p(z1|y, z2) as its prior ----------------

    def _data_arrays(self, images, labels):
        check_images(images, self.image_shape, self.data_support)
        labels = None if labels is None else check_labels(labels, len(images), self.num_classes)
        return (images,) if labels is None else (images, labels)

    def _code_draws(self, images, seed, num_samples):
        """(q(z1|x), draws z1 of shape (K, B, m1.latent_dim))."""
        posterior = self.m1.encoder(images)
        return posterior, sample(posterior, num_samples, seed)

    def _as_codes(self, z1):
        """M1 codes (..., latent) as M2's one-pixel images (N, 1, 1, latent), leading axes flattened."""
        return tf.reshape(z1, [-1, *self.m2.image_shape])

    def _elbo_terms(self, images, seed, labels, num_samples):
        """E_q(z1|x)[log p(x|z1) − log q(z1|x) + M2's bound on log p(z1)] (given y: log p(z1|y)), K draws of z1."""
        code_seed, m2_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2, alg=RANDOM_ALGORITHM))
        posterior, z1 = self._code_draws(images, code_seed, num_samples)  # (K, B, latent)
        log_likelihood = image_log_prob(self.m1.decoder(z1), images)  # (K, B)
        code_labels = None if labels is None else tf.tile(labels, [num_samples])
        code_bound = self.m2._elbo_terms(self._as_codes(z1), m2_seed, code_labels, 1)["elbo"]
        kl = tf.reduce_mean(posterior.log_prob(z1) - tf.reshape(code_bound, tf.shape(log_likelihood)), axis=0)
        reconstruction = -tf.reduce_mean(log_likelihood, axis=0)
        return {"elbo": -(reconstruction + kl), "reconstruction": reconstruction, "kl": kl}

    def _log_likelihood(self, images, seed, labels, num_samples, chunk_size):
        """log (1/K) Σ_k p(x|z1_k) p̂(z1_k) / q(z1_k|x), p̂(z1) M2's own importance-sampled estimate
        (`CODE_SAMPLES` draws, the label summed out unless given): a bound on log p(x) that rises with K."""
        code_prior = _CodeDensity(self, seed, labels)
        return objectives.iwae_bound(images, self.m1.encoder(images), self.m1.decoder, code_prior, seed, num_samples,
                                     min(chunk_size, CODE_CHUNK))

    def sample(self, n, seed=None, mode="mean", labels=None):
        """`n` images from M1+M2's generative model: y ~ p(y) (or `labels`), z2 ~ p(z2), z1 ~ p(z1|y, z2), then
        M1's p(x|z1): its mean, or a draw with mode="sample"."""
        seed = 0 if seed is None else seed
        codes = self.m2.sample(n, seed=seed, mode="sample", labels=labels)  # (n, 1, 1, m1.latent_dim)
        return self.m1.sample_from(tf.reshape(codes, [-1, self.m1.latent_dim]), seed + 1, mode)

    # Questions about single images go to M1, the model of images (it takes no labels) -----------------------

    def _m1_without_labels(self, labels, question):
        if labels is not None:
            raise ValueError(
                f"M1+M2 answers {question} with M1, its VAE of images, which takes no labels (M2 models the labels "
                "on M1's codes). Call it without labels."
            )
        return self.m1

    def encode(self, images, labels=None):
        """M1's posterior q(z1|x) (`tfvae.VAE.encode`): the codes M2 learns from."""
        return self._m1_without_labels(labels, "encode").encode(images)

    def reconstruct(self, images, labels=None):
        """M1's reconstructions (`tfvae.VAE.reconstruct`): each image's code decoded."""
        return self._m1_without_labels(labels, "reconstruct").reconstruct(images)

    def complete(self, images, observed=None, *args, labels=None, **kwargs):
        """M1's completion (`tfvae.VAE.complete`): the missing pixels from M1 with its own N(0, I) prior."""
        return self._m1_without_labels(labels, "complete").complete(images, observed, *args, **kwargs)

    def completion_log_likelihood(self, images, observed, *args, labels=None, **kwargs):
        """M1's log p(x_m | x_o) (`tfvae.VAE.completion_log_likelihood`), the model `complete` completes with."""
        return self._m1_without_labels(labels, "completion_log_likelihood").completion_log_likelihood(
            images, observed, *args, **kwargs)

    def _codes(self, images, seed=None):
        """M1's code of each image, shaped as M2's inputs (B, 1, 1, m1.latent_dim): a draw z1 ~ q(z1|x),
        or with no seed the posterior mean E[z1|x]."""
        posterior = self.m1.encoder(images)
        z1 = point(posterior) if seed is None else sample(posterior, 1, seed)[0]  # (B, m1.latent_dim)
        return tf.reshape(z1, [-1, *self.m2.image_shape])

    def compute_terms(self, data, seed, training=False):
        """M2's terms on a fresh draw of each image's code in training; in evaluation, on the posterior
        mean, the code `classify` uses, so that the reported accuracy is `accuracy`'s."""
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        code_seed, m2_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2, alg=RANDOM_ALGORITHM))
        return self.m2.compute_terms((self._codes(images, code_seed if training else None), labels), m2_seed, training)

    def check_data(self, x, y=None, name="x"):
        check_labeled_fit_input(x, y, self.image_shape, self.data_support, self.num_classes, name,
                                 allow_unlabeled=True)

    def fit(self, x=None, y=None, *args, **kwargs):
        self.m2.learn_labeled_fraction(x, y, self.check_data)
        return super().fit(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """Class probabilities of images (no labels needed), as `call` gives them."""
        check_fit_input(x, self.image_shape, self.data_support)
        return super(BaseVAE, self).predict(x, *args, **kwargs)  # BaseVAE.predict checks for labels

    def _class_posterior(self, images):
        """q(y | E[z1|x]) of a float32 tensor batch, unchecked (for batched inference and serving)."""
        return self.m2.classifier(self._codes(images))

    def call(self, images):
        """Class probabilities q(y | E[z1|x]), shape (B, num_classes): tensors only, for predict and serving."""
        return self._class_posterior(images).probs_parameter()

    def classify(self, images):
        """q(y | E[z1|x]), a `tfd.Categorical` with batch shape (B,)."""
        check_images(images, self.image_shape, self.data_support)
        return self._class_posterior(tf.convert_to_tensor(images, tf.float32))

    def accuracy(self, images, labels, batch_size=1000):
        """The accuracy of `classify` on labeled `images`."""
        check_images(images, self.image_shape, self.data_support)
        return classification_accuracy(self._class_posterior, images,
                                       check_labels(labels, len(images), self.num_classes), batch_size)

    def get_config(self):
        config = super().get_config()
        # M1 is frozen here: its optimizer (from its own training) is not part of this model.
        config["m1"] = {key: value for key, value in config["m1"].items() if key != "compile_config"}
        return config
