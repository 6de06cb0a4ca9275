"""Data completion against a linear-Gaussian model's closed-form p(x_m | x_o), and on real MNIST."""

import keras
import numpy as np
import pytest
import scipy.stats
from linear_gaussian import SIGMA, make_linear_gaussian

import tfvae
from tfvae import masks
from tfvae.completion import METHODS


@pytest.fixture(scope="module")
def gaussian_case():
    """(vae, x, observed mask, exact conditional means (N, missing), exact conditional covariance, exact log p(x_m|x_o))."""
    vae, x, _, _ = make_linear_gaussian()
    kernel, bias = vae.decoder.body.layers[0].get_weights()
    flat = x.reshape(len(x), -1)
    covariance = kernel.T @ kernel + SIGMA**2 * np.eye(flat.shape[1])  # p(x) = N(b, WWᵀ + σ²I)
    known = np.zeros(flat.shape[1], bool)
    known[[0, 2, 3, 5, 8, 11]] = True
    o, m = known, ~known
    gain = np.linalg.solve(covariance[np.ix_(o, o)], covariance[np.ix_(o, m)])
    means = bias[m] + (flat[:, o] - bias[o]) @ gain
    conditional_cov = covariance[np.ix_(m, m)] - covariance[np.ix_(m, o)] @ gain
    exact = np.array([scipy.stats.multivariate_normal(mu, conditional_cov).logpdf(row[m]) for mu, row in zip(means, flat)])
    return vae, x, known.reshape(x.shape[1:]), means, conditional_cov, exact


def test_completion_log_likelihood_matches_the_closed_form(gaussian_case):
    vae, x, observed, _, _, exact = gaussian_case
    estimates = np.stack([vae.completion_log_likelihood(x, observed, num_samples=20000, seed=s).numpy() for s in range(5)])
    standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(np.abs(estimates.mean(axis=0) - exact) <= 4 * standard_error + 5e-3), (estimates.mean(axis=0), exact)


@pytest.mark.parametrize("method, num_samples", [("importance", 20000), ("pseudo_gibbs", 4000),
                                                 ("metropolis_within_gibbs", 4000)])
def test_every_method_gives_the_exact_conditional_mean(gaussian_case, method, num_samples):
    vae, x, observed, means, _, _ = gaussian_case
    missing = ~observed.reshape(-1)
    runs = np.stack([
        vae.complete(x, observed, method=method, num_samples=num_samples, seed=s).numpy().reshape(len(x), -1)
        for s in range(10)
    ])
    np.testing.assert_array_equal(runs[:, :, ~missing], np.broadcast_to(x.reshape(len(x), -1)[:, ~missing], runs[:, :, ~missing].shape))
    standard_error = runs[:, :, missing].std(axis=0, ddof=1) / np.sqrt(len(runs))
    error = np.abs(runs[:, :, missing].mean(axis=0) - means)
    assert np.all(error <= 4 * standard_error + 1e-3), (error.max(), standard_error.max())


@pytest.mark.parametrize("method", METHODS)
def test_draws_spread_like_the_exact_conditional_and_keep_the_observed_pixels(gaussian_case, method):
    vae, x, observed, means, conditional_cov, _ = gaussian_case
    draws = vae.complete(x, observed, method=method, num_samples=4000, draws=200, seed=0).numpy()
    assert draws.shape == (200, *x.shape)
    flat = draws.reshape(200, len(x), -1)
    missing = ~observed.reshape(-1)
    np.testing.assert_array_equal(flat[:, :, ~missing], np.broadcast_to(x.reshape(len(x), -1)[:, ~missing], flat[:, :, ~missing].shape))
    spread = flat[:, :, missing].std(axis=0).mean()
    assert abs(spread / np.sqrt(np.diag(conditional_cov)).mean() - 1) < 0.2
    assert np.abs(flat[:, :, missing].mean(axis=0) - means).max() < 0.25  # 200 draws of a ~0.5-wide law


def test_masks_by_name():
    shape = (28, 28, 1)
    top = masks.make("top_half", shape)
    assert top.dtype == bool and top.shape == shape and top[:14].all() and not top[14:].any()
    assert masks.make("bottom_half", shape)[14:].all() and masks.make("left_half", shape)[:, :14].all()
    assert not masks.make("right_half", shape)[:, :14].any()
    center = masks.make("center", shape)
    assert not center[7:21, 7:21].any() and center.sum() == 28 * 28 - 14 * 14
    random = masks.make("random:0.5", shape, seed=0)
    assert 0.45 < random.mean() < 0.55 and not np.array_equal(random, masks.make("random:0.5", shape, seed=1))
    assert masks.make("quadrants:3", shape, seed=0).sum() == 3 * 14 * 14


@pytest.mark.parametrize("name, message", [
    ("top", "Unknown mask 'top'"), ("random:1.5", "needs a probability strictly between 0 and 1 after the colon"),
    ("random:x", "e.g. 'random:0.5'"), ("quadrants:4", "needs a whole number from 1 to 3 after the colon, e.g. 'quadrants:2'"),
])
def test_unknown_or_malformed_mask_names(name, message):
    with pytest.raises(ValueError, match=message):
        masks.make(name, (28, 28, 1))


def test_bad_completion_input_is_named(gaussian_case):
    vae, x, observed, _, _, _ = gaussian_case
    with pytest.raises(ValueError, match=r"Expected observed of shape \(3, 4, 1\)"):
        vae.complete(x, np.ones((4, 3, 1), bool))
    with pytest.raises(ValueError, match="no known pixel in image 0"):
        vae.complete(x, np.zeros(x.shape[1:], bool))
    with pytest.raises(ValueError, match="every pixel of image 0 as known"):
        vae.complete(x, np.ones(x.shape[1:], bool))
    with pytest.raises(ValueError, match="Unknown completion method 'gibbs'"):
        vae.complete(x, observed, method="gibbs")
    holes = x.copy()
    holes[0, 0, 0, 0] = np.nan  # pixel (0, 0) is observed
    with pytest.raises(ValueError, match="Observed pixels hold NaN"):
        vae.complete(holes, observed)
    holes = x.copy()
    holes[:, ~observed] = np.nan  # NaN where missing is fine: those pixels are what completion fills in
    completed = vae.complete(holes, observed, num_samples=100, seed=0).numpy()
    assert np.isfinite(completed).all()


# Real data ------------------------------------------------------------------------------------


def pixel_accuracy(means, truth, missing):
    """The share of missing pixels that `means` > 0.5 gets right."""
    return float(np.sum(((means > 0.5) == (truth > 0.5)) * missing) / np.sum(missing))


def per_pixel_mean_log_likelihood(pixel_means, truth, missing):
    """Per-image log-likelihood of the missing pixels under independent Bernoulli(training-set pixel means)."""
    means = np.clip(np.broadcast_to(pixel_means, truth.shape), 1e-6, 1 - 1e-6)
    return float(np.mean(np.sum(np.where(truth > 0.5, np.log(means), np.log1p(-means)) * missing, axis=(1, 2, 3))))


@pytest.fixture(scope="module")
def mnist_vae(binarized_mnist):
    train, _ = binarized_mnist
    keras.utils.set_random_seed(0)
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, seed=0)
    vae.compile()
    vae.fit(train, batch_size=100, epochs=10, verbose=0)
    return vae, train.mean(axis=0)


@pytest.mark.slow
@pytest.mark.parametrize("mask", ["top_half", "random:0.5"])
def test_on_mnist_every_method_beats_the_per_pixel_mean(mnist_vae, binarized_mnist, mask):
    vae, pixel_means = mnist_vae
    images = binarized_mnist[1][:200]
    observed = masks.make(mask, images.shape[1:], seed=0)
    missing = np.broadcast_to(~observed, images.shape)
    baseline_accuracy = pixel_accuracy(np.broadcast_to(pixel_means, images.shape), images, missing)
    accuracy = {
        method: pixel_accuracy(vae.complete(images, observed, method=method, num_samples=1000, seed=0).numpy(), images,
                               missing)
        for method in METHODS
    }
    assert min(accuracy.values()) > baseline_accuracy + 0.02, (accuracy, baseline_accuracy)
    # Metropolis-within-Gibbs is at least as good as pseudo-Gibbs (Mattei & Frellsen 2018), up to sampling noise.
    assert accuracy["metropolis_within_gibbs"] >= accuracy["pseudo_gibbs"] - 0.005, accuracy
    # The model's log p(x_m | x_o) beats the per-pixel means' log-likelihood of the same missing pixels.
    model = float(np.mean(vae.completion_log_likelihood(images, observed, num_samples=1000, seed=0)))
    baseline = per_pixel_mean_log_likelihood(pixel_means, images, missing)
    assert model > baseline + 5, (model, baseline)
    drawn = vae.complete(images[:10], observed, method="metropolis_within_gibbs", num_samples=500, draws=4, seed=0).numpy()
    assert np.all(drawn[:, :, observed] == images[:10][:, observed])
    assert not np.array_equal(drawn[0], drawn[1])


@pytest.mark.slow
def test_cli_completes_scores_and_draws_a_grid(tmp_path):
    import json

    from conftest import MNIST_CLI, invoke_cli, train_mnist_run

    run = train_mnist_run(tmp_path / "run", "test[:4000]", "test[9000:9200]", epochs=3, latent_dim=8)
    out = tmp_path / "completions.png"
    result = invoke_cli("complete", str(run), *MNIST_CLI, "--split", "test[9000:9100]", "--mask", "top_half",
                        "--method", "importance", "--num-samples", "200", "--draws", "2", "--out", str(out),
                        "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["num_examples"] == 100 and metrics["missing_pixels_per_image"] == 14 * 28
    assert metrics["accuracy"] > metrics["baseline_accuracy"], metrics  # baseline: the run's training split's pixel means
    assert metrics["completion_log_likelihood"] > metrics["baseline_log_likelihood"], metrics
    picture = keras.utils.img_to_array(keras.utils.load_img(out, color_mode="grayscale"))
    assert picture.shape[:2] == (16 * 28, 5 * 28)  # 16 rows: original, observed part, completion, 2 draws
    result = invoke_cli("complete", str(run), *MNIST_CLI, "--mask", "upper_half")
    assert result.exit_code == 2 and "Unknown mask 'upper_half'" in result.output and "Traceback" not in result.output
