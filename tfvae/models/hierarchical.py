"""Helmholtz machines (Dayan et al. 1995; Burda et al. 2015's two-layer models): a VAE of M stochastic layers.

The generative network p(h_M) p(h_{M-1}|h_M) ... p(h_1|h_2) p(x|h_1) and the recognition network
q(h_1|x) q(h_2|h_1) ... q(h_M|h_{M-1}) are the parts of `tfvae.hierarchy`, over one concatenated code, so
this is `tfvae.VAE` with those parts: every objective (ELBO, IWAE, wake-sleep, reweighted wake-sleep),
estimator, completion method, export signature and picture applies as it does to one layer.
"""

import math

import keras

from tfvae import hierarchy
from tfvae.likelihoods import make_likelihood
from tfvae.models.vae import VAE
from tfvae.networks import Decoder, check_image_shape
from tfvae.priors import make_prior


@keras.saving.register_keras_serializable(package="tfvae")
class HierarchicalVAE(VAE):
    """M stochastic layers of `latent_dims` units, bottom up, Gaussian or binary (`latent_type="bernoulli"`: a
    sigmoid belief network, trained by the score function, VIMCO or the wake-sleep family).

    `encode(x)` is the recognition chain q(h_1..h_M | x) (`tfvae.hierarchy.RecognitionChain`; `.layers()`
    gives each layer's posterior), `decode(z)` reads h_1 of a code z = (h_1, ..., h_M), `sample(n)` draws
    ancestrally from the top, and `latent_dim` is Σ latent_dims.
    """

    @classmethod
    def for_images(cls, input_shape, latent_dims=(100, 50), hidden_units=None, latent_type="gaussian",
                   likelihood="bernoulli", gaussian_scale=0.1, prior=None, **vae_options):
        """MLP networks with tanh units: `hidden_units[m]` between layer m−1 (the image for m = 0) and layer m, on
        the way up and on the way down; the default, two layers of twice each layer's units, is Burda et al.'s
        ((200, 200), (100, 100)) for latent_dims=(100, 50). `prior` is the top layer's prior, a `tfvae.priors`
        part or its registered name (`"vamp"`); None (or `"standard_normal"`) keeps N(0, I)."""
        shape = check_image_shape(input_shape)
        hidden_units = tuple((2 * units, 2 * units) for units in latent_dims) if hidden_units is None else hidden_units
        latent_dims, hidden_units = hierarchy.check_layers(latent_dims, hidden_units)
        encoder_body = keras.Sequential(
            [keras.Input(shape), keras.layers.Flatten(), *(keras.layers.Dense(units, activation="tanh")
                                                           for units in hidden_units[0])],
            name="hierarchical_encoder_body",
        )
        decoder_body = keras.Sequential(
            [keras.Input((sum(latent_dims),)), hierarchy.FirstLayer(latent_dims[0]),
             *(keras.layers.Dense(units, activation="tanh") for units in hidden_units[0][::-1]),
             keras.layers.Dense(math.prod(shape)), keras.layers.Reshape(shape)],
            name="hierarchical_decoder_body",
        )
        likelihood_options = {"scale": gaussian_scale} if likelihood == "gaussian" else {}
        return cls(
            hierarchy.HierarchicalEncoder(shape, latent_dims, hidden_units, encoder_body, latent_type, name="encoder"),
            Decoder(shape, sum(latent_dims), decoder_body, make_likelihood(likelihood, **likelihood_options),
                    name="decoder"),
            prior=hierarchy.HelmholtzPrior(latent_dims, hidden_units, latent_type, top=_top_prior(prior), name="prior"),
            **vae_options,
        )

    @classmethod
    def from_run_config(cls, model, info, seed=None, missing_data=False):
        options = cls._run_options(model, seed)
        for name in ("latent_dim", "architecture", "hidden_units", "posterior"):  # set by the layers themselves
            options.pop(name)
        return cls.for_images(info.image_shape, latent_dims=model.latent_dims, latent_type=model.latent_type, **options)

    @property
    def latent_dims(self):
        return self.encoder.latent_dims


def _top_prior(prior):
    """The top layer's prior part: None for the chain's own N(0, I) or Bernoulli, else the part or its name's."""
    if prior is None or prior == "standard_normal":
        return None
    return make_prior(prior) if isinstance(prior, str) else prior
