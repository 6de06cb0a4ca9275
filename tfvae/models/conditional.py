"""The conditional VAE (Sohn et al. 2015): q(z|x, y), p(x|z, y) and a prior p(z).

A `tfvae.VAE` whose networks take the label as data: the same objectives, estimators, parts, training
machinery and export. Beside them it may hold an auxiliary classifier c(y|x) whose judgement of generated
images teaches the decoder to make the class it is given (`tfvae.objectives.class_consistency_terms`).
"""

import keras

from tfvae import networks, objectives
from tfvae.models.vae import VAE


@keras.saving.register_keras_serializable(package="tfvae")
class ConditionalVAE(VAE):
    """A VAE of images given their class: generate "a 7" with `sample(n, labels=7)`.

    `fit` takes (images, integer labels), as arrays or a `tf.data` dataset of
    pairs; `encode(images, labels)`, `decode(z, labels)`, `elbo(images,
    labels=...)` and `log_likelihood(images, labels=...)` (of x given y) work
    as for `VAE`.
    """

    run_uses_labels = True
    parts = (*VAE.parts, "classifier")

    def __init__(self, encoder, decoder, classifier=None, class_consistency_weight=0.0, **kwargs):
        if not encoder.num_classes:
            raise ValueError(
                "Expected an encoder and decoder conditioned on labels (num_classes > 0). Received: "
                f"encoder.num_classes={encoder.num_classes}. Build them with num_classes, or use tfvae.VAE."
            )
        if not (isinstance(class_consistency_weight, (int, float)) and class_consistency_weight >= 0):
            raise ValueError(f"Expected class_consistency_weight >= 0. Received: "
                             f"class_consistency_weight={class_consistency_weight!r}")
        if class_consistency_weight and classifier is None:
            raise ValueError("class_consistency_weight weighs an auxiliary classifier's judgement of generated images; "
                             "pass the classifier too (tfvae.networks.mlp_classifier), or leave the weight at 0.")
        if classifier is not None and classifier.num_classes != encoder.num_classes:
            raise ValueError(f"Expected a classifier of the networks' {encoder.num_classes} classes. Received: "
                             f"classifier.num_classes={classifier.num_classes}")
        if classifier is not None and encoder.missing_data:
            raise ValueError("The auxiliary classifier needs whole images; a model of images with missing pixels "
                             "trains without it (classifier=None).")
        # State beyond the VAE's exists before `VAE.__init__` builds the model (Keras then locks it).
        self.classifier = classifier
        if classifier is not None:  # `fit` reports the classifier's loss on real images and its verdict on generated ones
            self.tracked = (*type(self).tracked, "classification", "consistency")
        super().__init__(encoder, decoder, **kwargs)
        self.class_consistency_weight = float(class_consistency_weight)

    @classmethod
    def for_images(cls, input_shape, num_classes, latent_dim=20, prior="class_conditional", prior_draw_weight=0.1,
                   class_consistency_weight=10.0, architecture="mlp", hidden_units=None, missing_data=False, **options):
        """An MLP or conv encoder/decoder pair conditioned on `num_classes` classes; options as `VAE.for_images`.

        The defaults are those that gave samples of the requested class (benchmarks/RESULTS.md): the prior
        p(z|y), a Gaussian per class; Sohn et al.'s hybrid objective with a tenth of the weight on decoding
        prior draws; and an auxiliary classifier (the encoder's body) whose judgement of the decoder's images
        of each class is weighed by `class_consistency_weight` (0 builds none; images with missing pixels
        train without one). Without them (prior="standard_normal", prior_draw_weight=0,
        class_consistency_weight=0) a 20-d latent space carries the class itself and samples often ignore the label.
        """
        networks.check_num_classes(num_classes, minimum=2)
        if missing_data:
            class_consistency_weight = 0.0
        classifier = None
        if class_consistency_weight:
            classifier = networks.networks_for(architecture).classifier(
                input_shape, num_classes, **networks.mlp_size(architecture, hidden_units))
        return super().for_images(input_shape, latent_dim=latent_dim, num_classes=num_classes, prior=prior,
                                  prior_draw_weight=prior_draw_weight, architecture=architecture,
                                  hidden_units=hidden_units, missing_data=missing_data, classifier=classifier,
                                  class_consistency_weight=class_consistency_weight, **options)

    def build(self, input_shape):
        """Builds the auxiliary classifier (if any), then the parts of the VAE."""
        if self.classifier is not None and not self.classifier.built:
            self.classifier.build(input_shape)
        super().build(input_shape)

    def compute_terms(self, data, seed, training=False):
        """The VAE's terms; with a classifier, its loss on the real images and the weighted consistency of
        generated ones join the loss (the bounds reported are unchanged)."""
        terms = super().compute_terms(data, seed, training)
        if self.classifier is None:
            return terms
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = self.labels_used(labels)
        auxiliary = objectives.class_consistency_terms(images, labels, self.classifier, self._decoder_for(labels),
                                                       self.prior_distribution(labels), seed)
        loss = terms["loss"] + auxiliary["classification"] + self.class_consistency_weight * auxiliary["consistency"]
        return {**terms, **auxiliary, "loss": loss}

    def get_config(self):
        return {**super().get_config(), "class_consistency_weight": self.class_consistency_weight}

    @classmethod
    def from_run_config(cls, model, info, seed=None, missing_data=False):
        return cls.for_images(info.image_shape, info.num_classes, **cls._run_options(model, seed), missing_data=missing_data,
                              class_consistency_weight=model.class_consistency_weight)
