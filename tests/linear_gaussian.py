"""A linear-Gaussian VAE whose log p(x), ELBO and posterior are known in closed form: the tests' independent truth."""

import keras
import numpy as np
import scipy.stats
import tensorflow_probability as tfp

from tfvae import VAE
from tfvae.networks import Decoder, Encoder

tfd = tfp.distributions
IMAGE_SHAPE, LATENT, SIGMA = (3, 4, 1), 2, 0.5  # tiny, all-different sizes


@keras.saving.register_keras_serializable(package="tfvae_tests")
class LinearGaussianLikelihood(keras.layers.Layer):
    """p(x|z) = N(Wz + b, σ²I): the decoder's raw output is the mean itself."""

    support = (-np.inf, np.inf)

    def call(self, mean):
        return tfd.Independent(tfd.Normal(mean, SIGMA), reinterpreted_batch_ndims=3)


def make_linear_gaussian(**vae_options):
    """(vae, x, exact log p(x), closed-form ELBO) for a linear-Gaussian VAE and 6 points drawn from it.

    Decoder p(x|z) = N(Wz + b, σ²I) with p(z) = N(0, I), so p(x) = N(b, WWᵀ + σ²I); the encoder
    gives the exact posterior mean with 1.5x too wide scales, so the ELBO is strictly below log p(x).
    """
    rng = np.random.default_rng(1)
    pixels = int(np.prod(IMAGE_SHAPE))
    w = rng.normal(size=(pixels, LATENT)).astype(np.float32)
    b = rng.normal(size=pixels).astype(np.float32)
    decoder_body = keras.Sequential(
        [keras.Input((LATENT,)), keras.layers.Dense(pixels), keras.layers.Reshape(IMAGE_SHAPE)]
    )
    decoder_body.layers[0].set_weights([w.T, b])
    decoder = Decoder(IMAGE_SHAPE, LATENT, decoder_body, LinearGaussianLikelihood())

    # Encoder: the exact posterior mean, with scales 1.5x the exact marginal ones,
    # so that q differs from p(z|x) and the ELBO is strictly below log p(x).
    posterior_cov = np.linalg.inv(np.eye(LATENT) + w.T @ w / SIGMA**2)
    gain = posterior_cov @ w.T / SIGMA**2  # loc = gain @ (x - b)
    q_scale = 1.5 * np.sqrt(np.diag(posterior_cov))
    encoder_body = keras.Sequential([keras.Input(IMAGE_SHAPE), keras.layers.Flatten()])
    encoder = Encoder(IMAGE_SHAPE, LATENT, encoder_body)
    kernel = np.concatenate([gain.T, np.zeros((pixels, LATENT))], axis=1)
    bias = np.concatenate([-gain @ b, np.log(np.expm1(q_scale - 1e-5))])
    encoder.to_params.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])

    x = (rng.normal(size=(6, LATENT)) @ w.T + b + SIGMA * rng.normal(size=(6, pixels))).astype(np.float32)
    exact = scipy.stats.multivariate_normal(b, w @ w.T + SIGMA**2 * np.eye(pixels)).logpdf(x)
    # The ELBO is also closed-form here: E_q log N(x; Wz + b, σ²I) - KL(q || N(0, I)).
    loc = (x - b) @ gain.T
    expected_log_lik = scipy.stats.norm(loc @ w.T + b, SIGMA).logpdf(x).sum(-1) - 0.5 / SIGMA**2 * np.sum(
        (w**2) @ q_scale**2
    )
    kl = 0.5 * np.sum(q_scale**2 + loc**2 - 1 - np.log(q_scale**2), axis=-1)
    vae = VAE(encoder, decoder, seed=0, **vae_options)
    return vae, x.reshape(-1, *IMAGE_SHAPE), exact, expected_log_lik - kl
