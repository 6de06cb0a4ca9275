"""A linear-Gaussian VAE whose log p(x), ELBO and posterior are known in closed form: the tests' independent truth."""

import keras
import numpy as np
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import VAE
from tfvae.networks import Decoder, Encoder
from tfvae.posteriors import make_posterior

tfd = tfp.distributions
IMAGE_SHAPE, LATENT, SIGMA = (3, 4, 1), 2, 0.5  # tiny, all-different sizes


@keras.saving.register_keras_serializable(package="tfvae_tests")
class LinearGaussianLikelihood(keras.layers.Layer):
    """p(x|z) = N(Wz + b, σ²I): the decoder's raw output is the mean itself."""

    support = (-np.inf, np.inf)

    def call(self, mean):
        return tfd.Independent(tfd.Normal(mean, SIGMA), reinterpreted_batch_ndims=3)


def _raw_scale(scale):
    """softplus⁻¹(scale − floor): the raw value a posterior head turns into `scale`."""
    return np.log(np.expm1(scale - 1e-5))


def exact_model(seed=1):
    """(w, b, x, exact log p(x)) of the model p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I), and 6 points drawn from it."""
    rng = np.random.default_rng(seed)
    pixels = int(np.prod(IMAGE_SHAPE))
    w = rng.normal(size=(pixels, LATENT)).astype(np.float32)
    b = rng.normal(size=pixels).astype(np.float32)
    x = (rng.normal(size=(6, LATENT)) @ w.T + b + SIGMA * rng.normal(size=(6, pixels))).astype(np.float32)
    exact = scipy.stats.multivariate_normal(b, w @ w.T + SIGMA**2 * np.eye(pixels)).logpdf(x)
    return w, b, x, exact


def make_linear_gaussian(posterior="diagonal", **vae_options):
    """(vae, x, exact log p(x), closed-form ELBO) for a linear-Gaussian VAE and 6 points drawn from it.

    Decoder p(x|z) = N(Wz + b, σ²I) with p(z) = N(0, I), so p(x) = N(b, WWᵀ + σ²I). The encoder gives the
    exact posterior mean; its covariance is 1.5² times the exact one's diagonal ("diagonal", or a flow's base
    when `posterior` is a head) or the exact one itself scaled by 1.5² ("full_covariance"), so q differs from
    p(z|x) and the ELBO is strictly below log p(x).
    """
    w, b, x, exact = exact_model()
    pixels = int(np.prod(IMAGE_SHAPE))
    decoder_body = keras.Sequential(
        [keras.Input((LATENT,)), keras.layers.Dense(pixels), keras.layers.Reshape(IMAGE_SHAPE)]
    )
    decoder_body.layers[0].set_weights([w.T, b])
    decoder = Decoder(IMAGE_SHAPE, LATENT, decoder_body, LinearGaussianLikelihood())

    posterior_cov = np.linalg.inv(np.eye(LATENT) + w.T @ w / SIGMA**2)
    gain = posterior_cov @ w.T / SIGMA**2  # loc = gain @ (x - b)
    head = make_posterior(posterior) if isinstance(posterior, str) else posterior
    if posterior == "full_covariance":
        q_cov = 1.5**2 * posterior_cov
        tril = np.linalg.cholesky(q_cov)
        tril[np.diag_indices(LATENT)] = _raw_scale(np.diag(tril))
        raw_scale = tfp.math.fill_triangular_inverse(tf.constant(tril, tf.float32)).numpy()
    else:  # a diagonal Gaussian, or a flow's diagonal base (its other parameters zero)
        q_cov = np.diag(1.5**2 * np.diag(posterior_cov))
        raw_scale = _raw_scale(np.sqrt(np.diag(q_cov)))
    encoder_body = keras.Sequential([keras.Input(IMAGE_SHAPE), keras.layers.Flatten()])
    encoder = Encoder(IMAGE_SHAPE, LATENT, encoder_body, head)
    rest = head.params_size(LATENT) - LATENT - len(raw_scale)
    kernel = np.concatenate([gain.T, np.zeros((pixels, len(raw_scale) + rest))], axis=1)
    bias = np.concatenate([-gain @ b, raw_scale, np.zeros(rest)])
    encoder.to_params.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])

    # The ELBO is also closed-form here: E_q log N(x; Wz + b, σ²I) - KL(q || N(0, I)).
    loc = (x - b) @ gain.T
    expected_log_lik = scipy.stats.norm(loc @ w.T + b, SIGMA).logpdf(x).sum(-1) - 0.5 / SIGMA**2 * np.trace(w @ q_cov @ w.T)
    kl = 0.5 * (np.trace(q_cov) + np.sum(loc**2, axis=-1) - LATENT - np.linalg.slogdet(q_cov)[1])
    vae = VAE(encoder, decoder, seed=0, **vae_options)
    return vae, x.reshape(-1, *IMAGE_SHAPE), exact, expected_log_lik - kl
