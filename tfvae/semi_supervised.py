"""Model M2 of Kingma, Rezende, Mohamed & Welling (2014): semi-supervised learning with a VAE.

The conditional VAE plus a classifier q(y|x). Labelled examples maximize the
conditional bound L(x, y) (with log p(y) for a uniform prior over classes) and
learn the classifier directly; unlabelled examples maximize
U(x) = Σ_y q(y|x) L(x, y) + H(q(y|x)), summed over every class in one batched
pass (never by sampling y). Everything else is `ConditionalVAE`'s.
"""

import keras
import numpy as np
import tensorflow as tf

from tfvae import networks, objectives
from tfvae.conditional import ConditionalVAE
from tfvae.names import BOUND_WEIGHTINGS
from tfvae.validation import check_images, check_labels


@keras.saving.register_keras_serializable(package="tfvae")
class SemiSupervisedVAE(ConditionalVAE):
    """M2: `fit` on (images, labels) where −1 marks an unlabelled example; `classify(images)` is q(y|x).

    The classification loss on labelled examples is weighted by `alpha` times
    the ratio of all to labelled examples (Kingma et al. 2014, eq. 9 with their
    α = 0.1·N): per batch, α times the mean −log q(y|x) over its labelled
    examples. `bound_weighting` says how labelled and unlabelled bounds add up:
      "data"   reweighted so that a batch of any labelled share estimates the whole
               data set's mean bound, each labelled example counting once as in the
               paper's J (`labeled_fraction`, the share of labelled examples in the
               training data, set by `fit` from arrays);
      "batch"  every example of a batch counts once, so labelled examples count as
               often as the pipeline shows them (a tenth of every batch, cycled), as
               most M2 implementations train; no `labeled_fraction` is needed (on
               Fashion-MNIST, accuracy is the same: benchmarks/RESULTS.md).
    `evaluate` reports `accuracy` (on labelled examples) beside the bound.
    """

    tracked = ("loss", "reconstruction", "kl", "elbo", "classification", "accuracy")
    allows_unlabelled = True

    def __init__(self, encoder, decoder, classifier, alpha=0.1, labeled_fraction=None, bound_weighting="data", **kwargs):
        if classifier.num_classes != encoder.num_classes:
            raise ValueError(
                "Expected the classifier to have the encoder's num_classes. Received: "
                f"classifier.num_classes={classifier.num_classes}, encoder.num_classes={encoder.num_classes}"
            )
        if encoder.missing_data:
            raise ValueError(
                "SemiSupervisedVAE does not train on images with missing pixels: its classifier q(y|x) needs whole "
                "images. Use tfvae.VAE or tfvae.ConditionalVAE with missing_data=True, or fill the missing pixels in."
            )
        if not (isinstance(alpha, (int, float)) and alpha >= 0):
            raise ValueError(f"Expected alpha >= 0. Received: alpha={alpha!r}")
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
    def for_images(cls, input_shape, num_classes, latent_dim=20, architecture="mlp", likelihood="bernoulli",
                   gaussian_scale=0.1, alpha=0.1, bound_weighting="data", **vae_options):
        """M2 with MLP or conv networks; the classifier has the encoder's body."""
        networks.check_num_classes(num_classes, minimum=2)
        make_classifier = networks.networks_for(architecture)[2]
        return cls(
            *networks.image_networks(input_shape, latent_dim, architecture, likelihood, gaussian_scale, num_classes),
            make_classifier(input_shape, num_classes),
            alpha=alpha,
            bound_weighting=bound_weighting,
            **vae_options,
        )

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
        if not self.classifier.built:
            self.classifier.build(input_shape)
        super().build(input_shape)

    def classify(self, images):
        """q(y|x), a `tfd.Categorical` with batch shape (B,)."""
        return self._class_posterior(self._checked(images))

    def _class_posterior(self, images):
        """q(y|x) of a float32 tensor batch, unchecked (for batched inference and serving)."""
        return self.classifier(images)

    def compute_terms(self, data, seed, training=False):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        num_classes = self.num_classes
        batch = tf.shape(images)[0]
        # Every (class, example) pair in one pass: images tiled C times, labels 0..C-1 each repeated B times.
        tiled = tf.tile(images, tf.concat([[num_classes], tf.ones([tf.rank(images) - 1], tf.int32)], 0))
        classes = tf.repeat(tf.range(num_classes), batch)
        per_pair = self.objective_terms(tiled, seed, classes)
        per_class = {name: tf.reshape(value, [num_classes, batch]) for name, value in per_pair.items()}
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
                raise ValueError("Expected some labelled examples (labels >= 0); every label is -1.")
            self.labeled_fraction = float(np.mean(labels >= 0))
        elif self.bound_weighting == "data" and not self.labeled_fraction_known:
            check_data(x, y)  # an unlabelled dataset is the likelier mistake: say that first
            raise ValueError(
                "Set the share of labelled examples in the training data first, e.g. "
                "vae.labeled_fraction = 100 / 60000, or pass arrays (images, labels) to fit, "
                'or weigh bounds by batch (bound_weighting="batch"), which needs no share.'
            )

    def accuracy(self, images, labels, batch_size=1000):
        """The classifier's accuracy on labelled `images`."""
        check_images(images, self.image_shape, self.data_support)
        return classification_accuracy(self._class_posterior, images, check_labels(labels, len(images), self.num_classes),
                                       batch_size)

    def get_config(self):
        return {
            **super().get_config(),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "alpha": self.alpha,
            "bound_weighting": self.bound_weighting,
            "labeled_fraction": self.labeled_fraction if self.labeled_fraction_known else None,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return super().from_config(config)


def classification_accuracy(class_posterior, images, labels, batch_size=1000):
    """The share of `labels` that the mode of `class_posterior(images)` (a `tfd.Categorical`) gets right, in batches."""
    predictions = np.concatenate([
        class_posterior(tf.convert_to_tensor(images[start : start + batch_size], tf.float32)).mode().numpy()
        for start in range(0, len(images), batch_size)
    ])
    return float(np.mean(predictions == labels))
