"""tfvae's models: each a `keras.Model` built from parts (encoder, decoder, prior; a classifier for M2).

`base.BaseVAE` holds the training machinery they share; `vae.VAE` is the model of images (and of labels,
with networks that take them); `conditional`, `semi_supervised` and `stacked` name the models of labels, and
`hierarchical` the Helmholtz machines of several stochastic layers.
Importing this package defines, and so registers with Keras, every model class.
"""

from tfvae.models.base import BaseVAE
from tfvae.models.conditional import ConditionalVAE
from tfvae.models.hierarchical import HierarchicalVAE
from tfvae.models.semi_supervised import SemiSupervisedVAE
from tfvae.models.stacked import StackedSemiSupervisedVAE
from tfvae.models.vae import VAE

__all__ = ["VAE", "BaseVAE", "ConditionalVAE", "HierarchicalVAE", "SemiSupervisedVAE", "StackedSemiSupervisedVAE"]
