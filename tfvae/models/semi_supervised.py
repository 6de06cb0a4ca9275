"""Model M2 of Kingma, Rezende, Mohamed & Welling (2014): semi-supervised learning with a VAE.

A `tfvae.VAE` of labels (networks conditioned on y) plus a classifier q(y|x) and M2's objective. Labeled
examples maximize the conditional bound L(x, y) (with log p(y) for a uniform prior over classes) and learn
the classifier directly; unlabeled examples maximize U(x) = Σ_y q(y|x) L(x, y) + H(q(y|x)), summed over
every class in one batched pass (never by sampling y). Everything else is the VAE's.
"""

import keras
import numpy as np
import tensorflow as tf

from tfvae import networks, objectives
from tfvae.models.vae import VAE, image_parts
from tfvae.names import BOUND_WEIGHTINGS, WAKE_SLEEP
from tfvae.validation import check_images, check_labels


@keras.saving.register_keras_serializable(package="tfvae")
class SemiSupervisedVAE(VAE):
    """M2: `fit` on (images, labels) where −1 marks an unlabeled example; `classify(images)` is q(y|x).

    The classification loss on labeled examples is weighted by `alpha` times
    the ratio of all to labeled examples (Kingma et al. 2014, eq. 9, whose
    α = 0.1·N is alpha = 0.1 here): per batch, α times the mean −log q(y|x) over
    its labeled examples. The default, 10, measured best (benchmarks/RESULTS.md). `bound_weighting` says how labeled and unlabeled bounds add up:
      "data"   reweighted so that a batch of any labeled share estimates the whole
               data set's mean bound, each labeled example counting once as in the
               paper's J (`labeled_fraction`, the share of labeled examples in the
               training data, set by `fit` from arrays);
      "batch"  every example of a batch counts once, so labeled examples count as
               often as the pipeline shows them (a tenth of every batch, cycled), as
               most M2 implementations train; no `labeled_fraction` is needed (on
               Fashion-MNIST, accuracy is the same: benchmarks/RESULTS.md).
    `evaluate` reports `accuracy` (on labeled examples) beside the bound.
    """

    tracked = ("loss", "reconstruction", "kl", "elbo", "classification", "accuracy")
    parts = (*VAE.parts, "classifier")
    allows_unlabeled = True
    run_uses_labels = True
    # q(y|x) learns from a hundred labels among noisy steps: ending on the average of the last ~1000 steps' weights
    # raised its test accuracy, M2's by 0.5 points on three seeds and M1+M2's by 0.4 on five (benchmarks/RESULTS.md).
    weight_averaging = 0.999

    def __init__(self, encoder, decoder, classifier, alpha=10.0, labeled_fraction=None, bound_weighting="data", **kwargs):
        if not encoder.num_classes or classifier.num_classes != encoder.num_classes:
            raise ValueError(
                "Expected networks conditioned on labels and a classifier of the same num_classes > 0. Received: "
                f"classifier.num_classes={classifier.num_classes}, encoder.num_classes={encoder.num_classes}"
            )
        if encoder.missing_data:
            raise ValueError(
                "SemiSupervisedVAE does not train on images with missing pixels: its classifier q(y|x) needs whole "
                "images. Use tfvae.VAE or tfvae.ConditionalVAE with missing_data=True, or fill the missing pixels in."
            )
        if not (isinstance(alpha, (int, float)) and alpha >= 0):
            raise ValueError(f"Expected alpha >= 0. Received: alpha={alpha!r}")
        if kwargs.get("objective") in WAKE_SLEEP:
            raise ValueError("M2 sums its bound over the classes of unlabeled images: train it with objective='elbo' "
                             f"or 'iwae'. Received: objective={kwargs['objective']!r}")
        if bound_weighting not in BOUND_WEIGHTINGS:
            raise ValueError(
                f"Expected bound_weighting in {BOUND_WEIGHTINGS}. Received: bound_weighting={bound_weighting!r}"
            )
        # State beyond the VAE's exists before `VAE.__init__` builds the model (Keras then locks it).
        self.classifier = classifier
        fraction = 1.0 if labeled_fraction is None else float(labeled_fraction)
        self._labeled_fraction = keras.Variable(fraction, trainable=False, name="labeled_fraction", dtype="float32")
        super().__init__(encoder, decoder, **kwargs)
        self.alpha = float(alpha)
        self.bound_weighting = bound_weighting
        self.labeled_fraction_known = labeled_fraction is not None

    @classmethod
    def for_images(cls, input_shape, num_classes, latent_dim=50, architecture="mlp", likelihood="bernoulli",
                   gaussian_scale=0.1, prior="standard_normal", posterior="diagonal", alpha=10.0, bound_weighting="data",
                   hidden_units=None, **vae_options):
        """M2 with MLP or conv networks; the classifier has the encoder's body. Options as `VAE.for_images`."""
        networks.check_num_classes(num_classes, minimum=2)
        encoder, decoder, prior = image_parts(input_shape, latent_dim, architecture, likelihood, gaussian_scale,
                                              prior=prior, posterior=posterior, num_classes=num_classes,
                                              hidden_units=hidden_units)
        classifier = networks.networks_for(architecture).classifier(
            input_shape, num_classes, **networks.mlp_size(architecture, hidden_units))
        return cls(encoder, decoder, classifier, prior=prior, alpha=alpha, bound_weighting=bound_weighting, **vae_options)

    @classmethod
    def from_run_config(cls, model, info, seed=None, missing_data=False):
        del missing_data  # refused by the run configuration: a classifier needs whole images
        labeled = info.num_labeled
        return cls.for_images(info.image_shape, info.num_classes, **cls._run_options(model, seed), alpha=model.alpha,
                              bound_weighting=model.bound_weighting, labeled_fraction=labeled / info.num_examples)

    @property
    def labeled_fraction(self):
        return float(self._labeled_fraction.numpy())

    @labeled_fraction.setter
    def labeled_fraction(self, value):
        if not 0 < value <= 1:
            raise ValueError(f"Expected labeled_fraction in (0, 1]. Received: labeled_fraction={value!r}")
        self._labeled_fraction.assign(float(value))
        self.labeled_fraction_known = True

    def build(self, input_shape):
        """Builds the classifier q(y|x), then the parts of the VAE."""
        if not self.classifier.built:
            self.classifier.build(input_shape)
        super().build(input_shape)

    def classify(self, images):
        """q(y|x), a `tfd.Categorical` with batch shape (B,)."""
        return self._class_posterior(self._checked(images))

    def _class_posterior(self, images):
        """q(y|x) of a float32 tensor batch, unchecked (for batched inference and serving): the classifier."""
        return self.classifier(images)

    def _label_posterior(self, images, per_class):
        """q(y|x): an unknown label is summed out under the classifier, as M2's unlabeled bound does."""
        return self._class_posterior(images)

    def compute_terms(self, data, seed, training=False):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        per_class = self.per_class_terms(images, seed)
        weighted = training and self.bound_weighting == "data"
        terms = objectives.semi_supervised_terms(
            per_class, self.classifier(images), labels, self.alpha, self._labeled_fraction if weighted else None
        )
        return self._updating_baseline(terms, training)

    def fit(self, x=None, y=None, *args, **kwargs):
        self.learn_labeled_fraction(x, y, self.check_data)
        return super().fit(x, y, *args, **kwargs)

    def learn_labeled_fraction(self, x, y, check_data):
        """Sets `labeled_fraction` from array labels `y`; for a dataset under "data" weighting, insists it is set.

        `check_data` validates `x` first (a model that feeds this one codes of its inputs passes its own).
        """
        if y is not None and not isinstance(x, tf.data.Dataset):
            labels = np.asarray(y)
            if not (labels >= 0).any():
                raise ValueError("Expected some labeled examples (labels >= 0); every label is -1.")
            self.labeled_fraction = float(np.mean(labels >= 0))
        elif self.bound_weighting == "data" and not self.labeled_fraction_known:
            check_data(x, y)  # an unlabeled dataset is the likelier mistake: say that first
            raise ValueError(
                "Set the share of labeled examples in the training data first, e.g. "
                "vae.labeled_fraction = 100 / 60000, or pass arrays (images, labels) to fit, "
                'or weigh bounds by batch (bound_weighting="batch"), which needs no share.'
            )

    def accuracy(self, images, labels, batch_size=1000):
        """The classifier's accuracy on labeled `images`."""
        check_images(images, self.image_shape, self.data_support)
        return classification_accuracy(self._class_posterior, images, check_labels(labels, len(images), self.num_classes),
                                       batch_size)

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "bound_weighting": self.bound_weighting,
            "labeled_fraction": self.labeled_fraction if self.labeled_fraction_known else None,
        }


def classification_accuracy(class_posterior, images, labels, batch_size=1000):
    """The share of `labels` that the mode of `class_posterior(images)` (a `tfd.Categorical`) gets right, in batches."""
    predictions = np.concatenate([
        class_posterior(tf.convert_to_tensor(images[start : start + batch_size], tf.float32)).mode().numpy()
        for start in range(0, len(images), batch_size)
    ])
    return float(np.mean(predictions == labels))
