import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import SCALE_FLOOR, sample
from tfvae.likelihoods import BernoulliLikelihood, FeatureGaussianLikelihood, GaussianLikelihood, LogitBernoulli, make_likelihood
from tfvae.posteriors import DiagonalGaussian
from tfvae.priors import StandardNormal

tfd = tfp.distributions


def test_posterior_scale_is_positive_and_log_prob_matches_scipy():
    params = np.random.default_rng(0).normal(size=(5, 2 * 3)).astype(np.float32)
    params[0, 3:] = -200.0  # softplus underflows to 0; the floor keeps the scale > 0
    posterior = DiagonalGaussian()(params)
    scale = posterior.stddev().numpy()
    assert posterior.batch_shape == (5,) and posterior.event_shape == (3,)
    np.testing.assert_allclose(scale[0], SCALE_FLOOR, rtol=1e-3)
    np.testing.assert_allclose(scale[1:], np.log1p(np.exp(params[1:, 3:])) + SCALE_FLOOR, rtol=1e-5)
    x = np.zeros((5, 3), np.float32)
    expected = scipy.stats.norm(params[1:, :3], scale[1:]).logpdf(x[1:]).sum(-1)
    np.testing.assert_allclose(posterior.log_prob(x).numpy()[1:], expected, rtol=1e-4)


def test_bernoulli_log_prob_matches_scipy_and_is_finite_at_extremes():
    logits = np.random.default_rng(1).normal(size=(4, 2, 3, 1)).astype(np.float32) * 30
    likelihood = BernoulliLikelihood()(logits)
    assert likelihood.event_shape == (2, 3, 1) and likelihood.batch_shape == (4,)
    for value in (0.0, 1.0):
        x = np.full((4, 2, 3, 1), value, np.float32)
        logits64 = logits.astype(np.float64)  # log_expit is exact where sigmoid saturates
        expected = x * scipy.special.log_expit(logits64) + (1 - x) * scipy.special.log_expit(-logits64)
        got = likelihood.log_prob(x).numpy()
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected.reshape(4, -1).sum(-1), rtol=1e-4)


def test_gaussian_likelihood_fixed_and_learned_scale():
    raw = np.random.default_rng(2).normal(size=(3, 2, 2, 3)).astype(np.float32)
    x = np.random.default_rng(3).random((3, 2, 2, 3)).astype(np.float32)
    fixed = GaussianLikelihood(scale=0.2)
    mean = 1 / (1 + np.exp(-raw))
    expected = scipy.stats.norm(mean, 0.2).logpdf(x).reshape(3, -1).sum(-1)
    np.testing.assert_allclose(fixed(raw).log_prob(x).numpy(), expected, rtol=1e-4)
    learned = GaussianLikelihood(scale="learned")
    learned.build(raw.shape)
    assert len(learned.trainable_weights) == 1
    np.testing.assert_allclose(float(learned.current_scale()), 1.0, atol=1e-3)


def test_feature_gaussian_likelihood_has_an_unsquashed_mean_and_one_learned_scale_per_feature():
    rng = np.random.default_rng(2)
    raw = rng.normal(scale=3.0, size=(4, 1, 1, 5)).astype(np.float32)
    x = rng.normal(scale=3.0, size=(4, 1, 1, 5)).astype(np.float32)
    head = make_likelihood("feature-gaussian")
    assert isinstance(head, FeatureGaussianLikelihood)
    head.build((None, 1, 1, 5))
    np.testing.assert_allclose(head(raw).stddev().numpy(), np.ones((4, 1, 1, 5)), atol=1e-4)  # σ starts at 1
    raw_scale = rng.normal(size=(1, 1, 5)).astype(np.float32)
    head.raw_scale.assign(raw_scale)
    scale = np.log1p(np.exp(raw_scale)) + 1e-5
    expected = scipy.stats.norm(raw, scale).logpdf(x).reshape(4, -1).sum(-1)
    np.testing.assert_allclose(head(raw).log_prob(x).numpy(), expected, rtol=1e-5)
    assert head.trainable_weights[0].shape == (1, 1, 5)


@pytest.mark.parametrize("scale", [0, -1.0, "fixed", None])
def test_gaussian_likelihood_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="scale > 0"):
        GaussianLikelihood(scale=scale)


def test_unknown_likelihood_lists_choices():
    with pytest.raises(ValueError, match=r"Unknown likelihood 'poisson'.*bernoulli.*gaussian"):
        make_likelihood("poisson")


def test_prior_is_standard_normal():
    prior = StandardNormal(latent_dim=4)()
    z = np.random.default_rng(4).normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(
        prior.log_prob(z).numpy(), scipy.stats.norm().logpdf(z).sum(-1), rtol=1e-5
    )
    assert prior.dtype == tf.float32


def test_reparameterized_sample_follows_the_posterior_and_carries_gradients():
    loc = tf.Variable([[0.5, -2.0, 1.0], [3.0, 0.0, -1.0]])
    scale = tf.Variable([[0.1, 1.0, 2.0], [0.5, 3.0, 0.01]])
    with tf.GradientTape() as tape:
        z = sample(tfd.MultivariateNormalDiag(loc, scale), 40000, tf.constant([1, 2]))
        total = tf.reduce_sum(z)
    assert z.shape == (40000, 2, 3)
    standard_error = scale.numpy() / np.sqrt(40000)
    assert np.all(np.abs(z.numpy().mean(0) - loc.numpy()) < 4 * standard_error)
    np.testing.assert_allclose(z.numpy().std(0), scale.numpy(), rtol=0.03)
    # d(sum z)/dμ = number of samples; d(sum z)/dσ = sum of ε, whose mean is ~0.
    grad_loc, grad_scale = tape.gradient(total, [loc, scale])
    np.testing.assert_allclose(grad_loc.numpy(), 40000.0)
    assert np.all(np.abs(grad_scale.numpy()) < 4 * np.sqrt(40000))
    np.testing.assert_array_equal(
        z, sample(tfd.MultivariateNormalDiag(loc, scale), 40000, tf.constant([1, 2]))
    )


def test_reparameterized_sample_of_other_posteriors_uses_their_own_sampler():
    posterior = tfd.Independent(tfd.Normal(tf.zeros((4, 3)), 2.0), reinterpreted_batch_ndims=1)
    z = sample(posterior, 5, tf.constant([3, 4]))
    np.testing.assert_array_equal(z, posterior.sample(5, seed=tf.constant([3, 4])))


def test_logit_bernoulli_log_prob_equals_tfps_and_scipys():
    from scipy import stats

    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(3, 4, 5)) * 6).astype(np.float32)
    binary = (rng.random((3, 4, 5)) < 0.5).astype(np.float32)
    grey = rng.random((3, 4, 5)).astype(np.float32)
    for x in (binary, grey):
        np.testing.assert_allclose(
            LogitBernoulli(logits=logits, dtype=tf.float32).log_prob(x),
            tfd.Bernoulli(logits=logits, dtype=tf.float32).log_prob(x), rtol=1e-5, atol=1e-5,
        )
    expected = stats.bernoulli.logpmf(binary, 1 / (1 + np.exp(-logits.astype(np.float64))))
    np.testing.assert_allclose(LogitBernoulli(logits=logits, dtype=tf.float32).log_prob(binary), expected, rtol=1e-4, atol=1e-5)
