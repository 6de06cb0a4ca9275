"""The conditional VAE (Sohn et al. 2015): q(z|x, y), p(x|z, y) and a prior p(z).

A `tfvae.VAE` whose networks take the label as data: the same objectives, estimators, parts, training
machinery and export. This class only names that model and builds it for images.
"""

import keras

from tfvae import networks
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

    def __init__(self, encoder, decoder, **kwargs):
        if not encoder.num_classes:
            raise ValueError(
                "Expected an encoder and decoder conditioned on labels (num_classes > 0). Received: "
                f"encoder.num_classes={encoder.num_classes}. Build them with num_classes, or use tfvae.VAE."
            )
        super().__init__(encoder, decoder, **kwargs)

    @classmethod
    def for_images(cls, input_shape, num_classes, latent_dim=20, prior="class_conditional", prior_draw_weight=0.1,
                   **options):
        """An MLP or conv encoder/decoder pair conditioned on `num_classes` classes; options as `VAE.for_images`.

        The defaults are those that gave samples of the requested class (benchmarks/RESULTS.md): the prior
        p(z|y), a Gaussian per class, and Sohn et al.'s hybrid objective with a tenth of the weight on
        decoding prior draws. Without them (prior="standard_normal", prior_draw_weight=0) a 20-d latent
        space carries the class itself and samples often ignore the label.
        """
        networks.check_num_classes(num_classes, minimum=2)
        return super().for_images(input_shape, latent_dim=latent_dim, num_classes=num_classes, prior=prior,
                                  prior_draw_weight=prior_draw_weight, **options)

    @classmethod
    def from_run_config(cls, model, info, seed=None, missing_data=False):
        return cls.for_images(info.image_shape, info.num_classes, **cls._run_options(model, seed), missing_data=missing_data)
