"""Posterior heads against independent truth: SciPy densities, Jacobians by automatic differentiation, and the
linear-Gaussian model's exact posterior."""

import keras
import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from linear_gaussian import LATENT, exact_model, make_linear_gaussian

import tfvae
from tfvae.distributions import point, sample, stopped
from tfvae.posteriors import FullCovarianceGaussian, InverseAutoregressiveFlow

tfd = tfp.distributions
RNG = np.random.default_rng(0)


def test_full_covariance_is_a_lower_triangular_scale_with_a_positive_diagonal_and_scipys_density():
    head = FullCovarianceGaussian()
    assert head.params_size(3) == 3 + 6
    params = RNG.normal(size=(4, 9)).astype(np.float32)
    posterior = head(params)
    tril = posterior.scale.to_dense().numpy()
    assert np.allclose(np.triu(tril, 1), 0) and np.all(np.diagonal(tril, axis1=1, axis2=2) > 0)
    z = RNG.normal(size=(4, 3)).astype(np.float32)
    for b in range(4):
        expected = scipy.stats.multivariate_normal(params[b, :3], tril[b] @ tril[b].T).logpdf(z[b])
        np.testing.assert_allclose(posterior.log_prob(z).numpy()[b], expected, rtol=1e-4)


def flow(latent_dim=3, num_steps=2, seed=1, zero_outputs=False, context_units=5, update="gated"):
    """An IAF head with random weights (its output layers too, unless `zero_outputs`) and q for 2 examples."""
    head = InverseAutoregressiveFlow(num_steps=num_steps, hidden_units=(8, 6), context_units=context_units,
                                     update=update)
    head.build((None, head.params_size(latent_dim)))
    rng = np.random.default_rng(seed)
    if not zero_outputs:
        head.set_weights([0.5 * rng.normal(size=w.shape).astype(np.float32) for w in head.get_weights()])
    params = rng.normal(size=(2, head.params_size(latent_dim))).astype(np.float32)
    return head, head(params)


@pytest.mark.parametrize("context_units, update", [(5, "gated"), (None, "gated"), (5, "affine")])  # None: 2·d
def test_the_flows_density_is_the_base_density_less_the_log_determinant_by_autodiff(context_units, update):
    _, posterior = flow(context_units=context_units, update=update)
    assert posterior.bijector._context.shape[-1] == (context_units or 2 * 3)
    z0 = tf.constant(RNG.normal(size=(2, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z = posterior.bijector.forward(z0)
    jacobian = tape.batch_jacobian(z, z0).numpy()  # (2, 3, 3)
    log_det = np.linalg.slogdet(jacobian.astype(np.float64))[1]
    expected = posterior.distribution.log_prob(z0).numpy() - log_det
    np.testing.assert_allclose(posterior.log_prob(tf.identity(z)).numpy(), expected, rtol=1e-4, atol=1e-4)  # inverted
    np.testing.assert_allclose(posterior.log_prob(z).numpy(), expected, rtol=1e-4, atol=1e-4)  # the forward pass's own
    assert not np.allclose(log_det, 0, atol=1e-3)  # the check has teeth: the flow scales


@pytest.mark.parametrize("update", ["gated", "affine"])
def test_each_step_is_autoregressive_its_jacobian_triangular(update):
    _, posterior = flow(latent_dim=4, num_steps=2, update=update)
    z0 = tf.constant(RNG.normal(size=(2, 4)), tf.float32)
    for index, step in enumerate(posterior.bijector._steps):
        one = tfvae.flows.InverseAutoregressiveBijector([step], posterior.bijector._context, update)
        with tf.GradientTape() as tape:
            tape.watch(z0)
            z = one.forward(z0)
        jacobian = tape.batch_jacobian(z, z0).numpy()
        # Step 0 orders the dimensions 1..d, step 1 the reverse: lower, then upper triangular.
        off = np.triu(jacobian, 1) if index == 0 else np.tril(jacobian, -1)
        assert np.allclose(off, 0, atol=1e-7) and not np.allclose(jacobian - np.eye(4) * jacobian, 0), index


def test_a_flow_whose_output_layers_are_zero_is_the_identity_and_the_model_the_diagonal_one():
    z0 = tf.constant(RNG.normal(size=(5, 2, 3)), tf.float32)
    np.testing.assert_array_equal(flow(zero_outputs=True, update="affine")[1].bijector.forward(z0), z0)
    _, posterior = flow(zero_outputs=True)
    np.testing.assert_array_equal(posterior.bijector.forward(z0), z0)
    np.testing.assert_allclose(posterior.log_prob(z0 + 0.0), posterior.distribution.log_prob(z0), rtol=1e-6)
    x = (RNG.random((6, 28, 28, 1)) < 0.5).astype(np.float32)
    with_flow = tfvae.VAE.for_images((28, 28, 1), latent_dim=3, posterior="iaf", kl="monte_carlo", seed=0)
    diagonal = tfvae.VAE.for_images((28, 28, 1), latent_dim=3, kl="monte_carlo", seed=0)
    diagonal.encoder.body.set_weights(with_flow.encoder.body.get_weights())
    kernel, bias = with_flow.encoder.to_params.get_weights()
    diagonal.encoder.to_params.set_weights([kernel[:, :6], bias[:6]])
    diagonal.decoder.set_weights(with_flow.decoder.get_weights())
    np.testing.assert_allclose(with_flow.elbo(x, num_samples=7, seed=3), diagonal.elbo(x, num_samples=7, seed=3), rtol=1e-6)
    np.testing.assert_allclose(with_flow.log_likelihood(x, num_samples=20, seed=3),
                               diagonal.log_likelihood(x, num_samples=20, seed=3), rtol=1e-6)


def test_the_flows_stopped_copy_passes_gradients_through_z_only():
    head, _ = flow()
    with tf.GradientTape(persistent=True) as tape:
        q = head(tf.constant(RNG.normal(size=(2, head.params_size(3))), tf.float32))
        z = sample(q, 4, tf.constant([1, 2]))
        held = stopped(q).log_prob(z)
        fixed = stopped(q).log_prob(tf.stop_gradient(z))
    weights = head.trainable_weights
    assert all(g is None for g in tape.gradient(fixed, weights))
    assert any(g is not None and np.abs(g.numpy()).max() > 0 for g in tape.gradient(held, weights))  # through z
    np.testing.assert_allclose(held, q.log_prob(z), rtol=1e-5)
    assert point(q).shape == (2, 3)


@pytest.mark.slow
def test_a_fitted_flow_comes_closer_to_the_exact_posterior_than_a_diagonal_gaussian():
    w, b, _, _ = exact_model()
    sigma = 0.5
    posterior_cov = np.linalg.inv(np.eye(LATENT) + w.T @ w / sigma**2)
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(512, LATENT)) @ w.T + b + sigma * rng.normal(size=(512, w.shape[0]))).astype(np.float32)
    exact = tfd.MultivariateNormalTriL(((x - b) @ (posterior_cov @ w.T / sigma**2).T).astype(np.float32),
                                       np.linalg.cholesky(posterior_cov).astype(np.float32))
    divergence = {}
    for name in ("diagonal", "iaf"):
        vae, images, _, _ = make_linear_gaussian(name if name == "diagonal" else InverseAutoregressiveFlow(
            num_steps=2, hidden_units=(16, 16), context_units=4))
        vae.decoder.trainable = False  # the exact generative model: only q learns
        keras.utils.set_random_seed(0)
        vae.compile(optimizer=keras.optimizers.Adam(3e-3))
        vae.fit(x.reshape(-1, *images.shape[1:]), batch_size=64, epochs=150, verbose=0)
        q = vae.encode(x.reshape(-1, *images.shape[1:]))
        z = sample(q, 200, tf.constant([5, 6]))
        divergence[name] = float(np.mean(q.log_prob(z) - exact.log_prob(z)))  # KL(q || p(z|x)), Monte Carlo
    assert divergence["iaf"] < 0.5 * divergence["diagonal"] and divergence["diagonal"] > 0.05, divergence


def test_a_flows_update_is_named_checked_and_saved():
    with pytest.raises(ValueError, match=r"Expected update to be one of \('gated', 'affine'\). Received: update='tanh'"):
        InverseAutoregressiveFlow(update="tanh")
    head, _ = flow(update="affine")
    again = InverseAutoregressiveFlow.from_config(head.get_config())
    params = tf.constant(RNG.normal(size=(2, head.params_size(3))), tf.float32)
    again.build(params.shape)
    again.set_weights(head.get_weights())
    z = tf.constant(RNG.normal(size=(4, 2, 3)), tf.float32)
    np.testing.assert_allclose(again(params).log_prob(z), head(params).log_prob(z), rtol=1e-5)  # the affine map, restored
    # Each step's map against its closed form: the affine step's scale exp(s) and shift m; the gated step's
    # σ = sigmoid(s + 2) / sigmoid(2) and shift (1 − σ) m.
    m, s = tf.constant([0.5, -1.0, 2.0]), tf.constant([-3.0, 0.0, 6.0])
    scale, log_scale, shift = tfvae.flows.step_map(m, s, "affine")
    np.testing.assert_allclose(scale, np.exp(s), rtol=1e-6)
    np.testing.assert_allclose(log_scale, s)
    np.testing.assert_allclose(shift, m)
    sigma = scipy.special.expit(s.numpy() + 2) / scipy.special.expit(2)
    scale, log_scale, shift = tfvae.flows.step_map(m, s, "gated")
    np.testing.assert_allclose(scale, sigma, rtol=1e-5)
    np.testing.assert_allclose(log_scale, np.log(sigma), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shift, (1 - sigma) * m.numpy(), rtol=1e-5, atol=1e-6)


def test_a_flow_saved_before_the_update_option_keeps_its_gated_steps():
    head, _ = flow(update="gated")
    config = head.get_config()
    del config["update"]
    old = InverseAutoregressiveFlow.from_config(config)
    assert old.update == "gated" and InverseAutoregressiveFlow().update == "affine"
    params = tf.constant(RNG.normal(size=(2, head.params_size(3))), tf.float32)
    old.build(params.shape)
    old.set_weights(head.get_weights())
    z = tf.constant(RNG.normal(size=(4, 2, 3)), tf.float32)
    np.testing.assert_allclose(old(params).log_prob(z), head(params).log_prob(z), rtol=1e-5)
