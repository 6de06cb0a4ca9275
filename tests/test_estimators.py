"""Objectives and gradient estimators against independent truth: a linear-Gaussian model's closed-form
ELBO gradient, agreement between unbiased estimators of the IWAE gradient, and real data."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from linear_gaussian import LATENT, SIGMA, make_linear_gaussian

import tfvae
from tfvae import names, objectives
from tfvae.config import read_run_config
from tfvae.diagnostics import gradient_variance
from tfvae.networks import Encoder
from tfvae.posteriors import BasePosterior

tfd = tfp.distributions


def closed_form_elbo(vae, x):
    """The linear-Gaussian ELBO as a differentiable function of the model's own variables, for any Gaussian q:
    E_q log N(x; Wz + b, σ²I) = log N(x; Wμ + b, σ²I) − tr(WΣWᵀ)/2σ², and KL(N(μ, Σ) || N(0, I)) written out."""
    posterior = vae.encoder(x)
    loc, cov = posterior.mean(), posterior.covariance()  # (B, d), (B, d, d)
    dense = vae.decoder.body.layers[0]
    w = tf.transpose(dense.kernel)  # (pixels, latent)
    flat_x = tf.reshape(x, [x.shape[0], -1])
    mean = loc @ tf.transpose(w) + dense.bias
    expected_log_lik = tf.reduce_sum(tfd.Normal(mean, SIGMA).log_prob(flat_x), -1) - 0.5 / SIGMA**2 * tf.linalg.trace(
        w @ cov @ tf.transpose(w))
    kl = 0.5 * (tf.linalg.trace(cov) + tf.reduce_sum(loc**2, -1) - LATENT - tf.linalg.logdet(cov))
    return expected_log_lik - kl


def gradient_draws(vae, x, objective, estimator, num_samples, draws, baseline=0.0):
    """`draws` independent minibatch gradients of the mean loss, flattened: (draws, parameters)."""
    variables = vae.trainable_variables

    @tf.function(jit_compile=True)
    def one(seed):
        with tf.GradientTape() as tape:
            terms = objectives.bound_terms(x, vae.encoder(x), vae.decoder, vae.prior_distribution(), seed, objective=objective,
                                           gradient_estimator=estimator, num_samples=num_samples, baseline=baseline)
            loss = tf.reduce_mean(terms["loss"])
        return tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, variables)], 0)

    return np.stack([one(tf.constant([7, d])).numpy() for d in range(draws)]).astype(np.float64)


@pytest.fixture(scope="module", params=["diagonal", "full_covariance"])
def model(request):
    """The linear-Gaussian VAE with each posterior head: every estimator must hold for any posterior."""
    vae, x, exact, elbo = make_linear_gaussian(request.param)
    return vae, tf.constant(x), exact, elbo


def test_closed_form_elbo_helper_matches_the_fixture(model):
    vae, x, _, elbo = model
    np.testing.assert_allclose(closed_form_elbo(vae, x).numpy(), elbo, rtol=1e-4)


@pytest.mark.parametrize("estimator, samples, draws", [
    ("reparameterization", 200, 200),
    ("doubly_reparameterized", 200, 200),
    ("score_function", 500, 60),
])
def test_every_elbo_estimator_is_unbiased_for_the_exact_gradient(model, estimator, samples, draws):
    vae, x, _, _ = model
    with tf.GradientTape() as tape:
        exact_loss = -tf.reduce_mean(closed_form_elbo(vae, x))
    exact = tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(exact_loss, vae.trainable_variables)], 0).numpy()
    baseline = float(tf.reduce_mean(objectives.bound_terms(
        x, vae.encoder(x), vae.decoder, vae.prior_distribution(), tf.constant([1, 1]), gradient_estimator="score_function",
        num_samples=200)["signal"]))
    estimates = gradient_draws(vae, x, "elbo", estimator, samples, draws, baseline)
    mean, error = estimates.mean(0), estimates.std(0, ddof=1) / np.sqrt(draws)
    assert np.all(np.abs(mean - exact) < 4 * error + 1e-5), np.max(np.abs(mean - exact) / (error + 1e-9))
    if estimator != "score_function":  # the check has teeth: pathwise estimates pin the gradient down to a few percent
        assert error.max() < 0.05 * np.abs(exact).max()


def test_iwae_estimators_agree_with_each_other(model):
    vae, x, _, _ = model
    k = 5
    results = {}
    for estimator, draws in (("reparameterization", 1200), ("doubly_reparameterized", 300), ("vimco", 600), ("score_function", 600)):
        estimates = gradient_draws(vae, x, "iwae", estimator, k, draws, baseline=-20.0)
        results[estimator] = (estimates.mean(0), estimates.std(0, ddof=1) / np.sqrt(draws))
    reference, reference_error = results["reparameterization"]
    for estimator, (mean, error) in results.items():
        assert np.all(np.abs(mean - reference) < 4 * np.hypot(error, reference_error) + 1e-5), estimator
    # The check has teeth: DReG's mean is pinned down to a few percent of the gradient's scale.
    assert results["doubly_reparameterized"][1].max() < 0.05 * np.abs(reference).max()


def test_the_iwae_training_bound_approaches_log_px_as_k_grows(model):
    vae, x, exact, elbo = model
    gaps = {}
    for k in (1, 10, 1000):
        bounds = [objectives.bound_terms(x, vae.encoder(x), vae.decoder, vae.prior_distribution(), tf.constant([3, s]),
                                         objective="iwae", num_samples=k)["bound"].numpy() for s in range(30)]
        gaps[k] = float(np.mean(exact - np.mean(bounds, 0)))
    assert abs(gaps[1] - np.mean(exact - elbo)) < 0.1
    assert gaps[1] > gaps[10] > gaps[1000] > -0.01 and gaps[1000] < 0.05 * gaps[1]


def test_estimator_names_are_tfps():
    assert set(names.GRADIENT_ESTIMATORS) == {e.name.lower() for e in tfp.vi.GradientEstimators}


def test_loss_values_are_the_bound_for_every_estimator(model):
    vae, x, _, _ = model
    seed = tf.constant([4, 2])
    for objective, estimators in names.OBJECTIVES.items():
        for estimator in estimators:
            terms = objectives.bound_terms(x, vae.encoder(x), vae.decoder, vae.prior_distribution(), seed, objective=objective,
                                           gradient_estimator=estimator, num_samples=4)
            np.testing.assert_allclose(terms["loss"], -terms["bound"], rtol=1e-5, err_msg=f"{objective}/{estimator}")
            np.testing.assert_allclose(terms["elbo"], -(terms["reconstruction"] + terms["kl"]), rtol=1e-5)


# Every objective/estimator pair through fit, evaluate, saving, resuming and export -------------


PAIRS = [(objective, estimator) for objective, estimators in names.OBJECTIVES.items() for estimator in estimators]


@pytest.mark.slow
@pytest.mark.parametrize("objective, estimator", PAIRS)
def test_every_pair_trains_saves_resumes_and_exports(objective, estimator, tmp_path, binarized_mnist):
    from tfvae.export import export_saved_model

    train, held_out = binarized_mnist
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=4, objective=objective, gradient_estimator=estimator,
                               num_samples=3, seed=0)
    vae.compile(steps_per_execution=8)
    assert vae.jit_compile and vae._fuses_steps()
    history = vae.fit(train[:2048], batch_size=128, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    evaluated = vae.evaluate(held_out[:256], batch_size=128, return_dict=True, verbose=0)
    assert np.isfinite(list(evaluated.values())).all()
    vae.save(tmp_path / "m.keras")
    restored = tfvae.load_model(tmp_path / "m.keras")
    assert (restored.objective, restored.gradient_estimator) == (objective, estimator)
    if estimator == "score_function":
        assert float(restored.baseline) == float(vae.baseline) != 0.0
    resumed = restored.fit(train[:2048], batch_size=128, epochs=1, verbose=0)  # optimizer state came along
    assert resumed.history["loss"][0] < history.history["loss"][0]
    saved = tf.saved_model.load(str(export_saved_model(restored, tmp_path / "sm")))
    assert np.isfinite(saved.signatures["elbo"](images=tf.constant(held_out[:4]))["elbo"].numpy()).all()


# Bad input --------------------------------------------------------------------------------------


class BernoulliLatents(BasePosterior):
    """A user's posterior head whose binary latents cannot be reparameterized."""

    def params_size(self, latent_dim):
        return latent_dim

    def call(self, params):
        return tfd.Independent(tfd.Bernoulli(logits=params, dtype=tf.float32), reinterpreted_batch_ndims=1)


@pytest.mark.parametrize("options, message", [
    ({"objective": "iwa"}, "Unknown objective 'iwa'. Expected one of elbo, iwae"),
    ({"gradient_estimator": "reinforce"}, ("Unknown gradient_estimator 'reinforce'. Expected one of reparameterization, "
                                           "score_function, doubly_reparameterized, vimco")),
    ({"gradient_estimator": "vimco"}, "'vimco' does not apply to objective='elbo'"),
    ({"objective": "iwae", "gradient_estimator": "vimco", "num_samples": 1}, "needs num_samples >= 2"),
    ({"num_samples": 0}, "Expected num_samples to be an integer >= 1"),
])
def test_bad_objective_settings(options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        tfvae.VAE.for_images((6, 5, 1), latent_dim=3, **options)


def test_a_non_reparameterizable_posterior_gets_a_score_function_estimator_and_refuses_a_pathwise_one():
    def make(**options):
        encoder = Encoder((6, 5, 1), 3, keras.Sequential([keras.Input((6, 5, 1)), keras.layers.Flatten()]), BernoulliLatents())
        return tfvae.VAE(encoder, tfvae.networks.mlp_decoder((6, 5, 1), 3), **options)

    with pytest.raises(ValueError, match="is not reparameterizable.*gradient_estimator='score_function'"):
        make(objective="iwae", num_samples=4, gradient_estimator="reparameterization")
    assert make(objective="iwae", num_samples=4).gradient_estimator == "vimco"
    assert make(objective="elbo").gradient_estimator == "score_function"
    assert make(objective="iwae", num_samples=4, gradient_estimator="score_function").gradient_estimator == "score_function"
    assert tfvae.VAE.for_images((6, 5, 1), latent_dim=3, gradient_estimator=tfp.vi.GradientEstimators.SCORE_FUNCTION
                                ).gradient_estimator == "score_function"


def test_gradient_variance_measures_only_the_estimators_that_apply_and_asks_wake_sleep_models_for_a_bound():
    encoder = Encoder((6, 5, 1), 3, keras.Sequential([keras.Input((6, 5, 1)), keras.layers.Flatten()]), BernoulliLatents())
    binary = tfvae.VAE(encoder, tfvae.networks.mlp_decoder((6, 5, 1), 3), objective="iwae", num_samples=4)
    images = (np.random.default_rng(0).random((8, 6, 5, 1)) < 0.5).astype(np.float32)
    assert set(gradient_variance(binary, images, num_draws=3, seed=0)) == {"score_function", "vimco"}
    with pytest.raises(ValueError, match="is not reparameterizable"):
        gradient_variance(binary, images, ("reparameterization",), num_draws=3)
    wake_sleep = tfvae.VAE.for_images((6, 5, 1), latent_dim=3, objective="reweighted_wake_sleep", num_samples=4)
    with pytest.raises(ValueError, match="--objective on the command line"):
        gradient_variance(wake_sleep, images, num_draws=3)
    assert set(gradient_variance(wake_sleep, images, num_draws=3, objective="iwae")) == set(names.OBJECTIVES["iwae"])


# On a trained Fashion-MNIST model: the evidence -------------------------------------------------


@pytest.fixture(scope="module")
def fashion_model():
    from tfvae.data import load_dataset

    train = load_dataset("fashion_mnist", split="train[:20000]", batch_size=128, download=False, seed=0)
    test = load_dataset("fashion_mnist", split="test[:64]", batch_size=64, binarize="static", shuffle=False, download=False)
    keras.utils.set_random_seed(0)  # the same model whichever tests ran before
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=10, seed=0)
    vae.compile()
    vae.fit(train, epochs=3, verbose=0)
    return vae, next(iter(test)).numpy()


@pytest.mark.slow
def test_score_function_gradients_are_far_noisier_than_reparameterized_ones(fashion_model):
    vae, batch = fashion_model
    result = gradient_variance(vae, batch[:32], ("reparameterization", "score_function"), num_draws=50, seed=0)
    ratio = result["score_function"]["encoder_variance"] / result["reparameterization"]["encoder_variance"]
    assert ratio >= 100, result
    assert result["reparameterization"]["encoder_snr"] > result["score_function"]["encoder_snr"]


def encoder_snr_by_k(vae, images, ks, num_draws):
    """{estimator: [encoder SNR of the IWAE gradient at each K]} for IWAE and DReG."""
    snr = {estimator: [] for estimator in ("reparameterization", "doubly_reparameterized")}
    for k in ks:
        result = gradient_variance(vae, images, tuple(snr), num_draws=num_draws, seed=1, objective="iwae", num_samples=k)
        for estimator, values in snr.items():
            values.append(result[estimator]["encoder_snr"])
    return snr


def test_dreg_encoder_snr_grows_with_k_while_iwae_falls(model):
    # Rainforth et al. 2018 / Tucker et al. 2018: with q close to the posterior, the IWAE encoder gradient's SNR
    # falls like 1/sqrt(K) while DReG's grows like sqrt(K). Measured: IWAE 0.37, 0.14, 0.07; DReG 0.61, 1.6, 5.7.
    vae, x, _, _ = model
    snr = encoder_snr_by_k(vae, x, (1, 10, 100), num_draws=100)
    iwae, dreg = snr["reparameterization"], snr["doubly_reparameterized"]
    assert iwae[0] > 2 * iwae[2] and iwae[0] > iwae[1] > iwae[2], snr
    assert dreg[2] > 4 * dreg[0] and dreg[0] < dreg[1] < dreg[2], snr


@pytest.mark.slow
def test_on_fashion_mnist_dreg_has_the_higher_encoder_snr_and_lower_variance(fashion_model):
    # On a model trained on the ELBO for 3 epochs, q is far from the posterior and the importance weights are
    # heavy-tailed: neither estimator's SNR moves reliably with K here (over four trainings IWAE's went
    # 0.53-0.77 at K=1 and 0.43-0.79 at K=10), but DReG's is above IWAE's every time (by 1.2-1.4x) with a lower
    # variance. The growth with K shows where q is close to p(z|x): see the linear-Gaussian test above.
    vae, batch = fashion_model
    for k in (1, 10):
        result = gradient_variance(vae, batch[:16], ("reparameterization", "doubly_reparameterized"), num_draws=60, seed=1,
                                   objective="iwae", num_samples=k)
        iwae, dreg = result["reparameterization"], result["doubly_reparameterized"]
        assert dreg["encoder_snr"] > 1.1 * iwae["encoder_snr"], (k, result)
        assert dreg["encoder_variance"] < iwae["encoder_variance"], (k, result)


@pytest.mark.slow
def test_cli_trains_iwae_with_dreg_and_reports_gradient_variance(tmp_path):
    from conftest import MNIST_CLI, invoke_cli

    run = tmp_path / "run"
    result = invoke_cli("train", *MNIST_CLI, "--train-split", "test[:2000]", "--eval-split", "test[9000:9200]",
                        "--epochs", "1", "--latent-dim", "4", "--objective", "iwae", "--num-samples", "10",
                        "--gradient-estimator", "doubly_reparameterized", "--log-likelihood-samples", "20",
                        "--output-dir", str(run), "--export-dir", str(tmp_path / "sm"), "--quiet")
    assert result.exit_code == 0, result.output
    config = read_run_config(run / "run_config.json").flat()
    assert (config["objective"], config["num_samples"], config["gradient_estimator"]) == ("iwae", 10, "doubly_reparameterized")
    record = json.loads((tmp_path / "sm" / "1" / "assets.extra" / "tfvae.json").read_text())
    assert (record["objective"], record["gradient_estimator"], record["num_samples"]) == ("iwae", "doubly_reparameterized", 10)
    result = invoke_cli("gradient-variance", str(run), *MNIST_CLI, "--split", "test[9000:9032]", "--num-draws", "10",
                        "--out", str(tmp_path / "gv.png"), "--json")
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert set(table) == {"reparameterization", "score_function", "doubly_reparameterized", "vimco"}
    assert (tmp_path / "gv.png").stat().st_size > 1000
    resumed = invoke_cli("train", *MNIST_CLI, "--train-split", "test[:2000]", "--eval-split", "test[9000:9200]",
                         "--epochs", "2", "--latent-dim", "4", "--objective", "iwae", "--num-samples", "10",
                         "--gradient-estimator", "doubly_reparameterized", "--log-likelihood-samples", "20",
                         "--output-dir", str(run), "--no-export", "--quiet", "--resume")
    assert resumed.exit_code == 0 and "Epoch 2/2" in resumed.output, resumed.output
