"""The objectives against closed forms: Gaussian KL, and a linear-Gaussian model's exact log p(x)."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from linear_gaussian import IMAGE_SHAPE, make_linear_gaussian

from tfvae import VAE, objectives
from tfvae.distributions import kl_divergence
from tfvae.priors import StandardNormal

tfd = tfp.distributions


def test_analytic_kl_matches_closed_form_and_monte_carlo():
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(5, 3)).astype(np.float32)
    scale = rng.uniform(0.3, 2.0, size=(5, 3)).astype(np.float32)
    posterior = tfd.MultivariateNormalDiag(loc, scale)
    prior = StandardNormal(latent_dim=3)()
    analytic = kl_divergence(posterior, prior, None, "analytic").numpy()
    closed_form = 0.5 * np.sum(scale**2 + loc**2 - 1 - np.log(scale**2), axis=-1)
    np.testing.assert_allclose(analytic, closed_form, rtol=1e-5)

    z = posterior.sample(20000, seed=(3, 4))
    monte_carlo = kl_divergence(posterior, prior, z, "monte_carlo").numpy()
    per_sample = (posterior.log_prob(z) - prior.log_prob(z)).numpy()
    standard_error = per_sample.std(axis=0) / np.sqrt(per_sample.shape[0])
    assert np.all(np.abs(monte_carlo - analytic) < 4 * standard_error)


@pytest.fixture(scope="module", params=["diagonal", "full_covariance"])
def linear_gaussian(request):
    """A linear-Gaussian VAE with each posterior head, its parameters, and data drawn from the model."""
    return make_linear_gaussian(request.param)


@pytest.mark.parametrize("posterior", ["diagonal", "full_covariance"])
@pytest.mark.parametrize("kl", ["analytic", "monte_carlo"])
def test_linear_gaussian_elbo_matches_closed_form_and_bounds_log_px(posterior, kl):
    vae, x, exact, closed_form_elbo = make_linear_gaussian(posterior, kl=kl)
    assert vae.kl_estimator == kl
    assert np.all(closed_form_elbo < exact - 0.05)  # the bound is strict for a mismatched q
    terms = [vae.elbo(x, num_samples=4000, seed=s).numpy() for s in range(4)]
    mean, spread = np.mean(terms, 0), np.std(terms, 0, ddof=1) / 2
    assert np.all(np.abs(mean - closed_form_elbo) < 4 * spread + 1e-3), (mean, closed_form_elbo)
    assert np.all(mean < exact)


def test_importance_sampled_log_likelihood_converges_to_exact(linear_gaussian):
    vae, x, exact, closed_form_elbo = linear_gaussian
    gaps, errors = {}, {}
    for k in (1, 10, 100, 5000):
        # 100 runs: the log-weights are skewed, and fewer runs misjudge their spread.
        runs = np.array([vae.log_likelihood(x, num_samples=k, seed=s).numpy() for s in range(100)])
        gaps[k] = exact - runs.mean(0)
        errors[k] = runs.std(0, ddof=1) / np.sqrt(len(runs))
    # K=1 is the ELBO in expectation; the bias shrinks as K grows (Burda et al. 2015).
    assert np.all(np.abs(gaps[1] - (exact - closed_form_elbo)) < 4 * errors[1])
    ks = sorted(gaps)
    for small, large in itertools.pairwise(ks):
        combined_error = np.hypot(errors[small], errors[large]).mean()
        assert gaps[small].mean() > gaps[large].mean() - 3 * combined_error, (small, large)
    assert gaps[1].mean() > 0.3 and gaps[1].mean() > 20 * abs(gaps[5000].mean())
    assert np.all(np.abs(gaps[5000]) < 4 * errors[5000] + 2e-3), (gaps[5000], errors[5000])


def test_log_likelihood_chunking_does_not_change_the_estimate(linear_gaussian, monkeypatch):
    vae, x, _, _ = linear_gaussian
    whole = vae.log_likelihood(x, num_samples=300, seed=7).numpy()
    # Chunks of 7 samples: 43 chunks, the last one partly masked; a different
    # chunking draws different samples, so only statistical agreement is expected.
    from tfvae.models import base as model_module

    monkeypatch.setattr(model_module, "IWAE_CHUNK_ELEMENTS", 7 * 100 * int(np.prod(IMAGE_SHAPE)))
    chunked = np.array([vae.log_likelihood(x, num_samples=300, seed=s).numpy() for s in range(8)])
    assert np.all(np.abs(chunked.mean(0) - whole) < 4 * chunked.std(0, ddof=1) + 1e-3)


def test_elbo_terms_shapes_and_beta():
    rng = np.random.default_rng(2)
    vae = VAE.for_images((5, 4, 1), latent_dim=3, seed=1)
    x = (rng.random((2, 5, 4, 1)) < 0.5).astype(np.float32)
    seed = tf.constant([1, 2], tf.int32)
    for beta in (0.0, 2.5):
        terms = objectives.bound_terms(x, vae.encoder(x), vae.decoder, vae.prior_distribution(), seed, num_samples=3, beta=beta)
        assert all(t.shape == (2,) for t in terms.values())
        np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + beta * terms["kl"], rtol=1e-6)
        np.testing.assert_allclose(terms["elbo"], -(terms["reconstruction"] + terms["kl"]), rtol=1e-6)
