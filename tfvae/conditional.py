"""The conditional VAE (Sohn et al. 2015): q(z|x, y), p(x|z, y), p(z) = N(0, I).

It is `tfvae.VAE` with the label joined to both networks' inputs: the same
objectives, estimators, training machinery and export; what differs is that
every batch, and every call, carries its labels.
"""

import keras
import tensorflow as tf

from tfvae import networks
from tfvae.model import VAE
from tfvae.validation import check_labelled_fit_input, check_labels


@keras.saving.register_keras_serializable(package="tfvae")
class ConditionalVAE(VAE):
    """A VAE of images given their class: generate "a 7" with `sample(n, labels=7)`.

    `fit` takes (images, integer labels), as arrays or a `tf.data` dataset of
    pairs; `encode(images, labels)`, `decode(z, labels)`, `elbo(images,
    labels=...)` and `log_likelihood(images, labels=...)` (of x given y) work
    as for `VAE`.
    """

    conditional = True
    allows_unlabelled = False  # whether label −1 (unknown) may appear in training data

    def __init__(self, encoder, decoder, **kwargs):
        if not encoder.num_classes or encoder.num_classes != decoder.num_classes:
            raise ValueError(
                "Expected a conditional encoder and decoder with the same num_classes > 0. Received: "
                f"encoder.num_classes={encoder.num_classes}, decoder.num_classes={decoder.num_classes}"
            )
        super().__init__(encoder, decoder, **kwargs)

    @classmethod
    def for_images(cls, input_shape, num_classes, latent_dim=20, architecture="mlp", likelihood="bernoulli",
                   gaussian_scale=0.1, missing_data=False, **vae_options):
        """An MLP or conv encoder/decoder pair conditioned on `num_classes` classes (NaN pixels allowed with `missing_data`)."""
        networks.check_num_classes(num_classes, minimum=2)
        return cls(
            *networks.image_networks(input_shape, latent_dim, architecture, likelihood, gaussian_scale, num_classes,
                                     missing_data),
            **vae_options,
        )

    @property
    def num_classes(self):
        return self.encoder.num_classes

    def _posterior(self, images, condition=None):
        if condition is None:  # only while the model is built, before any labels exist
            condition = tf.zeros(tf.shape(images)[:1], tf.int32)
        return self.encoder(images, condition)

    def _decoder_for(self, condition=None):
        return lambda z: self.decoder(z, condition)

    def _condition(self, labels, count):
        return check_labels(labels, count, self.num_classes)

    def check_data(self, x, y=None, name="x"):
        check_labelled_fit_input(x, y, self.image_shape, self.data_support, self.num_classes, name,
                                 allow_missing=self.missing_data, allow_unlabelled=self.allows_unlabelled)

    def call(self, inputs):
        """Reconstruction means of (images, labels): tensors only, for predict and serving."""
        images, labels = inputs
        return self._decoder_for(labels)(self._posterior(images, labels).mean()).mean()
