"""Priors against independent computations: densities in NumPy/SciPy, KL estimates, marginals, the statistics
the rest of the package measures against the model's own prior."""

import logging

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

import tfvae
from tfvae import evaluation
from tfvae.distributions import marginals
from tfvae.priors import ClassConditionalVampPrior, MixtureOfGaussians, StandardNormal, VampPrior

RNG = np.random.default_rng(0)


def mixture(latent_dim=3, num_components=4, spread=1.0):
    """A mixture prior with random means (times `spread`), scales and weights, and those values in NumPy."""
    prior = MixtureOfGaussians(num_components, latent_dim)
    means = (spread * RNG.normal(size=(num_components, latent_dim))).astype(np.float32)
    scales = RNG.uniform(0.3, 1.5, size=(num_components, latent_dim)).astype(np.float32)
    logits = RNG.normal(size=num_components).astype(np.float32)
    prior.set_weights([means, np.log(np.expm1(scales - 1e-5)), logits])
    return prior, means, scales, scipy.special.log_softmax(logits)


def numpy_mixture_log_prob(z, means, scales, log_weights):
    """log Σ_k π_k Π_d N(z_d; μ_kd, σ_kd) for z (..., d), by log-sum-exp in float64."""
    per_component = scipy.stats.norm(means, scales).logpdf(z[..., None, :].astype(np.float64)).sum(-1)
    return scipy.special.logsumexp(per_component + log_weights, axis=-1)


def test_standard_normal_is_n_0_i_of_the_models_latent_size():
    prior = StandardNormal(latent_dim=4)()
    z = RNG.normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(prior.log_prob(z), scipy.stats.norm().logpdf(z).sum(-1), rtol=1e-5)
    assert prior.dtype == tf.float32
    assert tfvae.VAE.for_images((6, 5, 1), latent_dim=3).prior_distribution().event_shape == (3,)
    with pytest.raises(ValueError, match="Expected the prior's latent_dim to be the networks' \\(3\\)"):
        tfvae.VAE.for_images((6, 5, 1), latent_dim=3, prior=StandardNormal(latent_dim=2))


def test_mixture_log_prob_is_a_log_sum_exp_of_gaussian_densities():
    prior, means, scales, log_weights = mixture()
    z = (2 * RNG.normal(size=(50, 3))).astype(np.float32)
    np.testing.assert_allclose(prior().log_prob(z), numpy_mixture_log_prob(z, means, scales, log_weights), rtol=1e-5)
    # Each dimension's marginal is the 1-d mixture with the same weights.
    marginal = marginals(prior()).log_prob(z).numpy()  # (50, 3)
    for d in range(3):
        expected = numpy_mixture_log_prob(z[:, d : d + 1], means[:, d : d + 1], scales[:, d : d + 1], log_weights)
        np.testing.assert_allclose(marginal[:, d], expected, rtol=1e-5)


def test_a_mixture_prior_has_no_closed_form_kl_so_the_model_estimates_it(caplog):
    with caplog.at_level(logging.INFO, logger="tfvae"):
        vae = tfvae.VAE.for_images((6, 5, 1), latent_dim=3, prior="mixture", seed=0)
    assert vae.kl_estimator == "monte_carlo"
    assert "KL(q || p) by Monte Carlo (no closed form) for a MultivariateNormalDiag posterior and MixtureSameFamily prior" \
        in caplog.text
    with pytest.raises(ValueError, match="has no closed form.*Use kl='monte_carlo'"):
        tfvae.VAE.for_images((6, 5, 1), latent_dim=3, prior="mixture", kl="analytic")
    assert tfvae.VAE.for_images((6, 5, 1), latent_dim=3).kl_estimator == "analytic"


def test_the_models_monte_carlo_kl_with_a_mixture_prior_agrees_with_a_numpy_estimate():
    # Components spread well apart, so that the KL against the mixture differs from the KL against N(0, I)
    # whatever the encoder's (unseeded) initial weights.
    prior, means, scales, log_weights = mixture(spread=3.0)
    vae = tfvae.VAE.for_images((6, 5, 1), latent_dim=3, prior=prior, seed=0)
    x = (RNG.random((4, 6, 5, 1)) < 0.5).astype(np.float32)
    model_kl = vae.elbo_terms(x, num_samples=20000, seed=1)["kl"].numpy()
    posterior = vae.encode(x)
    loc, scale = posterior.mean().numpy().astype(np.float64), posterior.stddev().numpy().astype(np.float64)
    z = loc + scale * np.random.default_rng(5).normal(size=(20000, *loc.shape))  # NumPy's own draws
    per_draw = scipy.stats.norm(loc, scale).logpdf(z).sum(-1) - numpy_mixture_log_prob(z, means, scales, log_weights)
    numpy_kl, error = per_draw.mean(0), per_draw.std(0) / np.sqrt(len(z))
    assert np.all(np.abs(model_kl - numpy_kl) < 4 * np.sqrt(2) * error), (model_kl, numpy_kl, error)
    # Against N(0, I) the KL would be another number: the check tells the two priors apart.
    standard = 0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale), axis=-1)
    assert np.mean(np.abs(standard - numpy_kl)) > 10 * np.mean(error)


def test_per_dimension_kl_and_active_units_are_measured_against_the_models_prior():
    vae = tfvae.VAE.for_images((6, 5, 1), latent_dim=3, prior="mixture", seed=0)
    # Components far from 0 and wide: the prior's marginal variance is ~(3² + 2²) per dimension.
    means = np.where(np.arange(10)[:, None] % 2, 3.0, -3.0) * np.ones((10, 3))
    vae.prior.set_weights([means.astype(np.float32), np.full((10, 3), np.log(np.expm1(2.0)), np.float32),
                           np.zeros(10, np.float32)])
    x = (RNG.random((300, 6, 5, 1)) < 0.5).astype(np.float32)
    statistics = evaluation.latent_statistics(vae, x)
    posterior = vae.encode(x)
    loc, scale = posterior.mean().numpy().astype(np.float64), posterior.stddev().numpy().astype(np.float64)
    # KL(N(loc_d, scale_d) || p(z_d)) by quadrature on a fine grid, per image and dimension.
    grid = np.linspace(-15, 15, 6001)[:, None, None]
    q = scipy.stats.norm(loc, scale)
    log_p = scipy.special.logsumexp(scipy.stats.norm([-3.0, 3.0], 2.0).logpdf(grid[..., None]), axis=-1) + np.log(0.5)
    expected = np.sum(q.pdf(grid) * (q.logpdf(grid) - log_p), axis=0) * (grid[1, 0, 0] - grid[0, 0, 0])
    np.testing.assert_allclose(statistics["kl"], expected.mean(0), rtol=0.03)
    against_standard_normal = np.mean(0.5 * (scale**2 + loc**2 - 1) - np.log(scale), axis=0)
    assert np.all(np.abs(against_standard_normal - expected.mean(0)) > 0.5)
    # Activity is the spread of the codes relative to the prior's own spread (13 here, 1 for N(0, I)).
    np.testing.assert_allclose(statistics["activity"], np.var(loc, axis=0) / 13.0, rtol=1e-3)


def test_the_vamp_prior_is_the_mean_of_the_encoders_gaussians_at_its_pseudo_inputs():
    vae = tfvae.VAE.for_images((6, 5, 1), latent_dim=3, prior=VampPrior(num_pseudo_inputs=7), seed=0)
    posterior = vae.encoder(vae.prior.pseudo_inputs())
    loc, scale = posterior.mean().numpy().astype(np.float64), posterior.stddev().numpy().astype(np.float64)  # (7, 3)
    z = (2 * RNG.normal(size=(40, 3))).astype(np.float32)
    expected = scipy.special.logsumexp(scipy.stats.norm(loc, scale).logpdf(z[:, None, :]).sum(-1), axis=1) - np.log(7)
    np.testing.assert_allclose(vae.prior_distribution().log_prob(z), expected, rtol=1e-5)
    assert vae.kl_estimator == "monte_carlo"
    # The model's Monte-Carlo KL against a NumPy estimate with NumPy's own draws.
    x = (RNG.random((3, 6, 5, 1)) < 0.5).astype(np.float32)
    model_kl = vae.elbo_terms(x, num_samples=20000, seed=1)["kl"].numpy()
    q = vae.encode(x)
    q_loc, q_scale = q.mean().numpy().astype(np.float64), q.stddev().numpy().astype(np.float64)
    draws = q_loc + q_scale * np.random.default_rng(5).normal(size=(20000, *q_loc.shape))
    log_p = scipy.special.logsumexp(scipy.stats.norm(loc, scale).logpdf(draws[:, :, None, :]).sum(-1), axis=-1) - np.log(7)
    per_draw = scipy.stats.norm(q_loc, q_scale).logpdf(draws).sum(-1) - log_p
    assert np.all(np.abs(model_kl - per_draw.mean(0)) < 4 * np.sqrt(2) * per_draw.std(0) / np.sqrt(20000))


def test_the_class_conditional_vamp_prior_mixes_each_classs_own_pseudo_inputs():
    # 7 pseudo-inputs over 3 classes: labels k mod 3 give the classes 3, 2 and 2 components.
    vae = tfvae.ConditionalVAE.for_images((6, 5, 1), num_classes=3, latent_dim=3, prior=ClassConditionalVampPrior(7), seed=0)
    pseudo_labels = np.arange(7) % 3
    posterior = vae.encoder(vae.prior.pseudo_inputs(), pseudo_labels)
    loc, scale = posterior.mean().numpy().astype(np.float64), posterior.stddev().numpy().astype(np.float64)  # (7, 3)
    z = (2 * RNG.normal(size=(30, 3))).astype(np.float32)
    labels = np.arange(30) % 3
    component_log_pdf = scipy.stats.norm(loc, scale).logpdf(z[:, None, :]).sum(-1)  # (30, 7)
    own = np.where(pseudo_labels[None, :] == labels[:, None], component_log_pdf, -np.inf)
    expected = scipy.special.logsumexp(own, axis=1) - np.log(np.bincount(pseudo_labels)[labels])
    np.testing.assert_allclose(vae.prior_distribution(labels).log_prob(z), expected, rtol=1e-5)
    # Without labels: the mean over the three classes of p(z|y).
    per_class = [scipy.special.logsumexp(component_log_pdf[:, pseudo_labels == c], axis=1) - np.log(np.sum(pseudo_labels == c))
                 for c in range(3)]
    marginal = scipy.special.logsumexp(np.stack(per_class), axis=0) - np.log(3)
    np.testing.assert_allclose(vae.prior_distribution().log_prob(z), marginal, rtol=1e-5)
    # Draws for label 1 have the mean of its two components' means (4 standard errors).
    draws = vae.prior_distribution(np.full(4000, 1)).sample(seed=3).numpy()
    np.testing.assert_array_less(np.abs(draws.mean(0) - loc[pseudo_labels == 1].mean(0)), 4 * draws.std(0) / np.sqrt(4000))
    assert vae.kl_estimator == "monte_carlo"
    with pytest.raises(ValueError, match=r"Expected at least one pseudo-input per class \(3\). Received: num_pseudo_inputs=2"):
        tfvae.ConditionalVAE.for_images((6, 5, 1), num_classes=3, latent_dim=3, prior=ClassConditionalVampPrior(2))
    with pytest.raises(ValueError, match="is p\\(z\\|y\\), for models of labels"):
        tfvae.VAE.for_images((6, 5, 1), latent_dim=3, prior="class_conditional_vamp")


def test_the_vamp_priors_pseudo_inputs_are_trained_and_saved(tmp_path, binarized_mnist):
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=4, prior="vamp", seed=0)
    before = vae.prior.pseudo_inputs().numpy()
    assert before.shape == (500, 28, 28, 1) and 0 <= before.min() and before.max() <= 1
    vae.compile()
    vae.fit(binarized_mnist[0][:1000], batch_size=100, epochs=2, verbose=0)
    after = vae.prior.pseudo_inputs().numpy()
    assert np.abs(after - before).max() > 1e-3  # learned
    vae.save(tmp_path / "vamp.keras")
    loaded = tfvae.load_model(tmp_path / "vamp.keras")
    np.testing.assert_array_equal(loaded.prior.pseudo_inputs(), after)
    np.testing.assert_allclose(loaded.elbo(binarized_mnist[1][:10], seed=0), vae.elbo(binarized_mnist[1][:10], seed=0), rtol=1e-5)
    with pytest.raises(ValueError, match="defined through the encoder: call it as prior\\(encoder=vae.encoder\\)"):
        loaded.prior()


def test_a_vamp_prior_saved_before_the_pixels_option_keeps_its_sigmoid():
    config = VampPrior(7, latent_dim=3, image_shape=(6, 5, 1)).get_config()
    del config["pixels"]
    old = VampPrior.from_config(config)  # built at once: its latent and image shapes are known
    w = old.raw_pseudo_inputs.numpy()
    np.testing.assert_allclose(old.pseudo_inputs(), 1 / (1 + np.exp(-w)), rtol=1e-6)
    clipped = VampPrior(7, latent_dim=3, image_shape=(6, 5, 1))
    clipped.raw_pseudo_inputs.assign(np.linspace(-1, 2, 7 * 30).reshape(7, 6, 5, 1))
    np.testing.assert_allclose(clipped.pseudo_inputs(), np.clip(np.linspace(-1, 2, 7 * 30).reshape(7, 6, 5, 1), 0, 1))
    with pytest.raises(ValueError, match="Expected pixels to be one of \\('clipped', 'sigmoid'\\). Received: pixels='tanh'"):
        VampPrior(7, pixels="tanh")
