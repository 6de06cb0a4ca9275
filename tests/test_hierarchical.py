"""Helmholtz machines against independent truth: a two-layer linear-Gaussian model in closed form, a tiny sigmoid
belief network by enumerating every state, and every objective and estimator on real data."""

import itertools

import keras
import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from linear_gaussian import LinearGaussianLikelihood

import tfvae
from tfvae import hierarchy, objectives
from tfvae.models.hierarchical import HierarchicalVAE
from tfvae.networks import Decoder
from tfvae.priors import VampPrior

tfd = tfp.distributions
SHAPE, D1, D2, SIGMA, S1 = (2, 2, 1), 3, 2, 0.5, 0.7  # tiny, all-different sizes
PIXELS = int(np.prod(SHAPE))


def linear_hierarchy(latent_type, likelihood, **options):
    """A two-layer model whose conditionals are linear maps (no hidden units), the weights random."""
    encoder_body = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten()])
    encoder = hierarchy.HierarchicalEncoder(SHAPE, (D1, D2), ((), ()), encoder_body, latent_type)
    decoder_body = keras.Sequential([keras.Input((D1 + D2,)), hierarchy.FirstLayer(D1), keras.layers.Dense(PIXELS),
                                     keras.layers.Reshape(SHAPE)])
    vae = HierarchicalVAE(encoder, Decoder(SHAPE, D1 + D2, decoder_body, likelihood),
                          prior=hierarchy.HelmholtzPrior((D1, D2), ((), ()), latent_type), seed=0, **options)
    rng = np.random.default_rng(7)
    for layer in [*vae.encoder.first, *vae.encoder.links[0], *vae.prior.links[0], decoder_body.layers[1]]:
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.8 for w in layer.get_weights()])
    return vae


# A two-layer linear-Gaussian model: log p(x) and the ELBO in closed form ------------------------------


@pytest.fixture(scope="module")
def gaussian():
    vae = linear_hierarchy("gaussian", LinearGaussianLikelihood())
    raw_s1 = np.log(np.expm1(S1 - 1e-5))
    down = vae.prior.links[0][0]  # h2 -> [loc, raw scale] of h1
    kernel, bias = down.get_weights()
    kernel[:, D1:] = 0.0
    bias[D1:] = raw_s1
    down.set_weights([kernel, bias])
    w = vae.decoder.body.layers[1].kernel.numpy().T  # (pixels, d1)
    b = vae.decoder.body.layers[1].bias.numpy()
    a_kernel, a = kernel[:, :D1].T, bias[:D1]  # h1 = A h2 + a + s1 η
    prior_h1 = a_kernel @ a_kernel.T + S1**2 * np.eye(D1)
    covariance = w @ prior_h1 @ w.T + SIGMA**2 * np.eye(PIXELS)
    # The recognition model set near the exact posterior (means exact, scales its marginal ones, a little wider), so
    # importance sampling converges; its scales do not depend on the input, as the closed form takes them.
    def raw(scale):
        return np.log(np.expm1(1.2 * scale - 1e-5))

    h1_cov = np.linalg.inv(np.linalg.inv(prior_h1) + w.T @ w / SIGMA**2)
    first = vae.encoder.first[0]
    gain = h1_cov @ w.T / SIGMA**2
    first.set_weights([np.concatenate([gain.T, np.zeros((PIXELS, D1))], 1),
                       np.concatenate([h1_cov @ np.linalg.solve(prior_h1, a) - gain @ b, raw(np.sqrt(np.diag(h1_cov)))])])
    h2_cov = np.linalg.inv(np.eye(D2) + a_kernel.T @ a_kernel / S1**2)
    up = vae.encoder.links[0][0]  # q(h2|h1)
    up_gain = h2_cov @ a_kernel.T / S1**2
    up.set_weights([np.concatenate([up_gain.T, np.zeros((D1, D2))], 1),
                    np.concatenate([-up_gain @ a, raw(np.sqrt(np.diag(h2_cov)))])])
    rng = np.random.default_rng(3)
    h2 = rng.normal(size=(6, D2))
    h1 = h2 @ a_kernel.T + a + S1 * rng.normal(size=(6, D1))
    x = (h1 @ w.T + b + SIGMA * rng.normal(size=(6, PIXELS))).astype(np.float32)
    exact = scipy.stats.multivariate_normal(w @ a + b, covariance).logpdf(x)
    return vae, x.reshape(-1, *SHAPE), exact


def closed_form_elbo(vae, x):
    """E_q[log p(x|h1) + log p(h1|h2) + log p(h2) − log q(h1|x) − log q(h2|h1)] of the linear model, written out
    for q(h1|x) = N(μ1, S1), q(h2|h1) = N(E h1 + e, S2), as a function of the model's own variables."""
    flat = tf.reshape(x, [x.shape[0], -1])
    first = vae.encoder.first[0]
    params = flat @ first.kernel + first.bias
    mu1, scale1 = params[:, :D1], tf.nn.softplus(params[:, D1:]) + 1e-5
    up = vae.encoder.links[0][0]
    e_kernel, e_bias = up.kernel[:, :D2], up.bias[:D2]  # (d1, d2)
    scale2 = tf.nn.softplus(up.bias[D2:]) + 1e-5  # the same for every h1 (its kernel part is multiplied by h1)
    cov1 = tf.linalg.diag(scale1**2)
    decoder = vae.decoder.body.layers[1]
    w = tf.transpose(decoder.kernel)
    likelihood = (tf.reduce_sum(tfd.Normal(mu1 @ tf.transpose(w) + decoder.bias, SIGMA).log_prob(flat), -1)
                  - tf.linalg.trace(w @ cov1 @ tf.transpose(w)) / (2 * SIGMA**2))
    down = vae.prior.links[0][0]
    a_kernel, a_bias = tf.transpose(down.kernel[:, :D1]), down.bias[:D1]  # (d1, d2)
    e = tf.transpose(e_kernel)  # (d2, d1): h2 = E h1 + e
    mean_h2 = mu1 @ e_kernel + e_bias
    cov_h2 = e @ cov1 @ tf.transpose(e) + tf.linalg.diag(scale2**2)
    residual_map = tf.eye(D1) - a_kernel @ e  # h1 − A h2 − a = (I − AE) h1 − A e − a − A L2 ε
    mean_r = mu1 @ tf.transpose(residual_map) - tf.linalg.matvec(a_kernel, e_bias) - a_bias
    cov_r = residual_map @ cov1 @ tf.transpose(residual_map) + a_kernel @ tf.linalg.diag(scale2**2) @ tf.transpose(a_kernel)
    log_2pi = np.log(2 * np.pi)
    middle = -0.5 * D1 * (log_2pi + np.log(S1**2)) - (tf.reduce_sum(mean_r**2, -1) + tf.linalg.trace(cov_r)) / (2 * S1**2)
    top = -0.5 * D2 * log_2pi - 0.5 * (tf.reduce_sum(mean_h2**2, -1) + tf.linalg.trace(cov_h2))
    entropy1 = 0.5 * D1 * (1 + log_2pi) + tf.reduce_sum(tf.math.log(scale1), -1)
    entropy2 = 0.5 * D2 * (1 + log_2pi) + tf.reduce_sum(tf.math.log(scale2))
    return likelihood + middle + top + entropy1 + entropy2


def test_the_two_layer_elbo_matches_its_closed_form_and_bounds_the_exact_log_likelihood(gaussian):
    vae, x, exact = gaussian
    closed = closed_form_elbo(vae, tf.constant(x)).numpy()
    runs = np.stack([vae.elbo(x, num_samples=4000, seed=s).numpy() for s in range(4)])
    np.testing.assert_allclose(runs.mean(0), closed, atol=4 * runs.std(0).max() / 2 + 0.02)
    assert np.all(closed < exact)
    gaps, errors = {}, {}
    for k in (1, 100, 5000):
        estimates = np.stack([vae.log_likelihood(x, num_samples=k, seed=s).numpy() for s in range(20)])
        gaps[k], errors[k] = (exact - estimates.mean(0)).mean(), estimates.std(0).mean() / np.sqrt(20)
    assert gaps[1] > gaps[100] > gaps[5000] - 3 * errors[5000]
    assert abs(gaps[5000]) < 4 * errors[5000] + 0.02, (gaps, errors)


def test_the_reparameterized_gradient_is_the_closed_form_elbos(gaussian):
    vae, x, _ = gaussian
    x = tf.constant(x)
    variables = vae.encoder.trainable_variables
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(closed_form_elbo(vae, x))
    exact = tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, variables)], 0).numpy()

    @tf.function(jit_compile=True)
    def estimate(seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(vae.objective_terms(x, seed, num_samples=100)["loss"])
        return tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, variables)], 0)

    # The closed form holds q(h2|h1)'s scale fixed, so the weights from h1 to that scale are left out of the check.
    up_kernel = vae.encoder.links[0][0].kernel
    checked = np.concatenate([np.ones(v.shape, bool).ravel() if v is not up_kernel
                              else (np.arange(v.shape[1]) < D2)[None].repeat(v.shape[0], 0).ravel() for v in variables])
    draws = np.stack([estimate(tf.constant([3, s])).numpy() for s in range(200)])[:, checked]
    mean, error, exact = draws.mean(0), draws.std(0) / np.sqrt(len(draws)), exact[checked]
    assert np.all(np.abs(mean - exact) < 4 * error + 1e-4), np.max(np.abs(mean - exact) / (error + 1e-9))
    assert error.max() < 0.05 * np.abs(exact).max()  # the check has teeth


# A tiny sigmoid belief network: every state enumerated ------------------------------------------------



def states(units):
    """Every value of a binary layer of this many units."""
    return np.array(list(itertools.product((0.0, 1.0), repeat=units)), np.float32)


@pytest.fixture(scope="module")
def belief_network():
    vae = linear_hierarchy("bernoulli", tfvae.likelihoods.BernoulliLikelihood(), objective="iwae", num_samples=2)
    x = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0]], np.float32).reshape(-1, *SHAPE)
    return vae, x


def enumerated(vae, x):
    """(log p(x), q(h|x), log p(x, h), log q(h|x)) over all 2^(d1+d2) states (h1, h2), written from the weights alone."""
    flat = tf.reshape(x, [x.shape[0], -1])
    pairs = [(a, b) for a in states(D1) for b in states(D2)]
    h1, h2 = tf.constant([a for a, _ in pairs]), tf.constant([b for _, b in pairs])

    def bernoulli(logits, values):
        return tf.reduce_sum(values * logits - tf.math.softplus(logits), -1)

    first, up = vae.encoder.first[0], vae.encoder.links[0][0]
    down, out = vae.prior.links[0][0], vae.decoder.body.layers[1]
    log_q = bernoulli((flat @ first.kernel + first.bias)[:, None], h1) + bernoulli(h1 @ up.kernel + up.bias, h2)
    log_joint = (bernoulli(vae.prior.top, h2) + bernoulli(h2 @ down.kernel + down.bias, h1)
                 + bernoulli((h1 @ out.kernel + out.bias)[None], flat[:, None]))
    return tf.reduce_logsumexp(log_joint, -1), tf.exp(log_q), log_joint, log_q


def test_the_iwae_bound_approaches_the_enumerated_log_likelihood(belief_network):
    vae, x = belief_network
    exact, q, log_joint, log_q = [t.numpy() for t in enumerated(vae, tf.constant(x))]
    np.testing.assert_allclose(q.sum(-1), 1, rtol=1e-5)
    exact_elbo = np.sum(q * (log_joint - log_q), -1)
    runs = np.stack([vae.elbo(x, num_samples=5000, seed=s).numpy() for s in range(4)])
    np.testing.assert_allclose(runs.mean(0), exact_elbo, atol=0.05)
    estimates = np.stack([vae.log_likelihood(x, num_samples=3000, seed=s).numpy() for s in range(10)])
    assert np.all(np.abs(estimates.mean(0) - exact) < 4 * estimates.std(0) / np.sqrt(10) + 0.01)
    assert np.all(exact_elbo < exact - 0.05)


def gradients(vae, x, variables, **options):
    @tf.function(jit_compile=True)
    def one(seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(vae.objective_terms(x, seed, **options)["loss"])
        return tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, variables)], 0)

    return one


@pytest.mark.parametrize("objective, estimator, draws", [("elbo", "score_function", 3000), ("iwae", "vimco", 3000)])
def test_score_function_and_vimco_are_unbiased_for_the_enumerated_gradients(belief_network, objective, estimator, draws):
    vae, x = belief_network
    x = tf.constant(x)
    variables = vae.trainable_variables
    with tf.GradientTape() as tape:
        _, q, log_joint, log_q = enumerated(vae, x)
        if objective == "elbo":
            bound = tf.reduce_sum(q * (log_joint - log_q), -1)
        else:  # K = 2: every pair of states, each of probability q(s1) q(s2)
            log_w = log_joint - log_q
            pair = tf.experimental.numpy.logaddexp(log_w[:, :, None], log_w[:, None, :]) - np.log(2.0)  # log (w_i + w_j)/2
            bound = tf.reduce_sum(q[:, :, None] * q[:, None] * pair, axis=[1, 2])
        loss = -tf.reduce_mean(bound)
    exact = tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, variables)], 0).numpy()
    one = gradients(vae, x, variables, objective=objective, gradient_estimator=estimator, num_samples=2)
    estimates = np.stack([one(tf.constant([5, s])).numpy() for s in range(draws)])
    mean, error = estimates.mean(0), estimates.std(0) / np.sqrt(draws)
    assert np.all(np.abs(mean - exact) < 4 * error + 1e-4), np.max(np.abs(mean - exact) / (error + 1e-9))


def test_reweighted_wake_sleep_takes_the_iwae_generative_gradient_and_the_recognition_updates_are_grad_log_q(belief_network):
    vae, x = belief_network
    x = tf.constant(x)
    generative = vae.decoder.trainable_variables + vae.prior.trainable_variables
    recognition = vae.encoder.trainable_variables
    seed = tf.constant([9, 9])

    def grads(variables, **options):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(vae.objective_terms(x, seed, num_samples=4, **options)["loss"])
        return [g.numpy() for g in tape.gradient(loss, variables)]

    for iwae, rws in zip(grads(generative, objective="iwae", gradient_estimator="vimco"),
                         grads(generative, objective="reweighted_wake_sleep")):
        np.testing.assert_allclose(rws, iwae, rtol=1e-4, atol=1e-6)
    # The wake update: Σ_k w̃_k ∇ log q(h_k|x) on the same K draws, computed here from them.
    posterior = vae.encode(x)
    z = tfvae.distributions.sample(posterior, 4, seed)
    with tf.GradientTape() as tape:
        q = vae.encoder(x)
        log_w = vae.decoder(z).log_prob(x) + vae.prior_distribution().log_prob(z) - q.log_prob(z)
        wake = -tf.reduce_mean(tf.reduce_sum(tf.stop_gradient(tf.nn.softmax(log_w, 0)) * q.log_prob(z), 0))
    for expected, got in zip(tape.gradient(wake, recognition), grads(recognition, objective="reweighted_wake_sleep")):
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-6)
    # The sleep update: ∇ log q(h|x) at the step's dreams (h, x) ~ p.
    codes, dreams = objectives.dream(vae.prior_distribution(), vae.decoder, 3, objectives.sleep_seed(seed))
    with tf.GradientTape() as tape:
        sleep = -tf.reduce_mean(vae.encoder(dreams).log_prob(codes))
    expected = [g.numpy() for g in tape.gradient(sleep, recognition)]
    assert max(np.abs(g).max() for g in expected) > 0
    vae.recognition_update = "sleep"
    try:
        for objective in ("wake_sleep", "reweighted_wake_sleep"):
            for want, got in zip(expected, grads(recognition, objective=objective)):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    finally:
        vae.recognition_update = "wake"


# Every valid pairing on real data; the invalid ones refused -------------------------------------------


PAIRS = [
    *[("gaussian", objective, estimator, 1 if objective in ("elbo", "wake_sleep") else 5)
      for objective, estimators in tfvae.names.OBJECTIVES.items() for estimator in estimators or (None,)],
    ("bernoulli", "elbo", "score_function", 1), ("bernoulli", "iwae", "score_function", 5),
    ("bernoulli", "iwae", "vimco", 5), ("bernoulli", "wake_sleep", None, 1), ("bernoulli", "reweighted_wake_sleep", None, 5),
]


# Resuming restores the one optimizer whatever the objective: checked for a pathwise and a score-function pairing.
RESUMED = {("gaussian", "iwae", "doubly_reparameterized"), ("bernoulli", "reweighted_wake_sleep", None)}


@pytest.mark.slow
@pytest.mark.parametrize("latent_type, objective, estimator, k", PAIRS)
def test_every_valid_pairing_trains_under_xla_round_trips_and_resumes(latent_type, objective, estimator, k, binarized_mnist,
                                                                       tmp_path):
    train, held_out = binarized_mnist
    keras.utils.set_random_seed(0)
    vae = HierarchicalVAE.for_images((28, 28, 1), latent_dims=(16, 8), latent_type=latent_type, objective=objective,
                                     gradient_estimator=estimator, num_samples=k, seed=0)
    vae.compile()
    history = vae.fit(train[:500], batch_size=100, epochs=1, verbose=0).history
    assert all(np.isfinite(values).all() for values in history.values()), history
    vae.save(tmp_path / "model.keras")
    loaded = tfvae.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.elbo(held_out[:20], seed=1), vae.elbo(held_out[:20], seed=1), rtol=1e-5)
    settings = ("objective", "gradient_estimator", "num_samples", "latent_dim")
    assert [getattr(loaded, name) for name in settings] == [getattr(vae, name) for name in settings] and vae.jit_compile
    assert loaded.prior.get_config() == vae.prior.get_config() and loaded.prior.latent_type == latent_type
    if (latent_type, objective, estimator) not in RESUMED:
        return
    resumed = loaded.fit(train[:500], batch_size=100, epochs=2, initial_epoch=1, verbose=0).history
    assert np.isfinite(resumed["loss"]).all() and int(loaded.optimizer.iterations) == 10


@pytest.mark.parametrize("options, message", [
    ({"latent_type": "bernoulli", "gradient_estimator": "reparameterization"}, "not reparameterizable .*objective='wake_sleep'"),
    ({"latent_type": "bernoulli", "gradient_estimator": "doubly_reparameterized"}, "score_function"),
    ({"objective": "wake_sleep", "gradient_estimator": "score_function"}, "has gradients of its own"),
    ({"objective": "reweighted_wake_sleep", "beta": 2.0}, "takes none"),
    ({"latent_dims": (8,), "hidden_units": ((4,), (4,))}, "one tuple of hidden units per stochastic layer"),
    ({"latent_type": "ternary"}, "Unknown latent_type 'ternary'. Expected one of gaussian, bernoulli"),
])
def test_invalid_pairings_are_refused_with_the_estimators_that_apply(options, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalVAE.for_images((6, 5, 1), **{"latent_dims": (4, 3), **options})


def test_the_hierarchy_serves_every_layer_of_its_posterior_and_samples_from_the_top(binarized_mnist):
    vae = HierarchicalVAE.for_images((28, 28, 1), latent_dims=(6, 4), seed=0)
    posterior = vae.encode(binarized_mnist[1][:3])
    layers = posterior.layers()
    assert [layer.event_shape[0] for layer in layers] == [6, 4] and vae.latent_dim == 10
    np.testing.assert_allclose(layers[0].mean(), posterior.mean()[:, :6], rtol=1e-6)
    assert vae.sample(5, seed=1).shape == (5, 28, 28, 1) and vae.latent_dims == (6, 4)
    binary = HierarchicalVAE.for_images((28, 28, 1), latent_dims=(6, 4), latent_type="bernoulli")
    # A binary top layer starts at Bernoulli(½).
    np.testing.assert_allclose(binary.prior_distribution().sample(2000, seed=(1, 2)).numpy()[:, 6:].mean(), 0.5, atol=0.05)


def test_a_vamp_prior_on_the_top_layer_is_the_mixture_of_the_top_posteriors_at_its_pseudo_inputs():
    vae = HierarchicalVAE.for_images((6, 5, 1), latent_dims=(4, 3), hidden_units=((8,), (5,)), prior=VampPrior(7), seed=0)
    z = vae.prior_distribution().sample(6, seed=(1, 2)).numpy()
    h1, h2 = z[:, :4], z[:, 4:]
    top = vae.encoder(vae.prior.top_prior.pseudo_inputs()).layers()[-1]  # q(h2 | E h1) at each pseudo-input, batch (7,)
    loc, scale = top.mean().numpy(), top.stddev().numpy()
    log_top = scipy.special.logsumexp(scipy.stats.norm(loc, scale).logpdf(h2[:, None]).sum(-1), axis=1) - np.log(7)
    (k1, b1), (k2, b2) = [layer.get_weights() for layer in vae.prior.links[0]]  # h2 -> tanh 8 -> [loc, raw scale] of h1
    params = np.tanh(h2 @ k1 + b1) @ k2 + b2
    log_h1 = scipy.stats.norm(params[:, :4], np.logaddexp(0, params[:, 4:]) + 1e-5).logpdf(h1).sum(-1)
    np.testing.assert_allclose(vae.prior_distribution().log_prob(z), log_top + log_h1, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="binary top layer has its own learned Bernoulli prior"):
        HierarchicalVAE.for_images((6, 5, 1), latent_dims=(4, 3), latent_type="bernoulli", prior="vamp")
