"""Training on incomplete data: NaN marks a missing pixel, bounds count observed pixels only (MIWAE).

Checked against a linear-Gaussian model's closed-form log p(x_o) and ELBO, and on real MNIST
against a model trained on complete data.
"""

import json

import keras
import numpy as np
import pytest
import scipy.stats
from conftest import MNIST_CLI, MNIST_DIR, invoke_cli
from linear_gaussian import IMAGE_SHAPE, LATENT, SIGMA, make_linear_gaussian

import tfvae
from tfvae import masks
from tfvae.completion import METHODS
from tfvae.config import read_run_config
from tfvae.data import load_dataset
from tfvae.data.sources import DataUnavailable
from tfvae.evaluation import collect
from tfvae.networks import mlp_encoder

KNOWN = [0, 2, 3, 5, 8, 11]  # observed pixels of the linear-Gaussian images


@pytest.fixture(scope="module")
def gaussian_case():
    """(missing-data VAE with the linear-Gaussian decoder, x with NaN where missing, W, b, observed mask (flat))."""
    complete, x, _, _ = make_linear_gaussian()
    keras.utils.set_random_seed(0)
    encoder = mlp_encoder(IMAGE_SHAPE, LATENT, hidden_units=(16,), missing_data=True)
    vae = tfvae.VAE(encoder, complete.decoder, seed=0)
    kernel, bias = complete.decoder.body.layers[0].get_weights()
    known = np.zeros(int(np.prod(IMAGE_SHAPE)), bool)
    known[KNOWN] = True
    marked = np.where(known, x.reshape(len(x), -1), np.nan).reshape(x.shape).astype(np.float32)
    return vae, marked, kernel.T, bias, known


def test_log_likelihood_of_incomplete_images_is_the_exact_log_p_of_the_observed_pixels(gaussian_case):
    vae, marked, w, b, known = gaussian_case
    flat = marked.reshape(len(marked), -1)[:, known]
    exact = scipy.stats.multivariate_normal(b[known], w[known] @ w[known].T + SIGMA**2 * np.eye(known.sum())).logpdf(flat)
    estimates = np.stack([vae.log_likelihood(marked, num_samples=20000, seed=s).numpy() for s in range(5)])
    standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(np.abs(estimates.mean(axis=0) - exact) <= 4 * standard_error + 5e-3), (estimates.mean(axis=0), exact)


def test_elbo_of_incomplete_images_matches_its_closed_form_over_observed_pixels(gaussian_case):
    vae, marked, w, b, known = gaussian_case
    posterior = vae.encode(marked)
    loc, scale = posterior.mean().numpy(), posterior.stddev().numpy()  # (N, latent)
    flat = marked.reshape(len(marked), -1)[:, known]
    w_o, b_o = w[known], b[known]
    # E_q log N(x_o; W_o z + b_o, σ²I) = log N(x_o; W_o μ + b_o, σ²I) − Σ_i (W_o² σ_q²)_i / 2σ².
    expected = scipy.stats.norm(loc @ w_o.T + b_o, SIGMA).logpdf(flat).sum(-1) - 0.5 / SIGMA**2 * (scale**2 @ (w_o**2).T).sum(-1)
    kl = 0.5 * np.sum(scale**2 + loc**2 - 1 - np.log(scale**2), axis=-1)
    estimates = np.stack([vae.elbo(marked, num_samples=20000, seed=s).numpy() for s in range(10)])
    standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(np.abs(estimates.mean(axis=0) - (expected - kl)) <= 4 * standard_error + 1e-3)


def test_the_missing_pixels_values_never_matter(gaussian_case):
    vae, marked, *_ = gaussian_case
    filled = np.where(np.isnan(marked), 123.0, marked).astype(np.float32)
    vae_terms = vae.elbo_terms(marked, seed=3)
    # The same images with the missing pixels holding anything but NaN are complete images: a different bound.
    assert not np.allclose(vae.elbo(filled, seed=3), vae_terms["elbo"])
    reference = vae.encode(marked)
    np.testing.assert_allclose(vae.encode(np.where(np.isnan(marked), np.nan, marked)).mean(), reference.mean())
    assert np.all(np.isfinite(vae_terms["elbo"]))


def test_fit_on_arrays_with_nan_trains_with_finite_gradients_and_round_trips(tmp_path, binarized_mnist):
    images = binarized_mnist[0][:1024].copy()
    images[np.random.default_rng(0).random(images.shape) < 0.5] = np.nan
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=4, missing_data=True, seed=0)
    vae.compile()
    history = vae.fit(images, batch_size=128, epochs=3, verbose=0).history
    assert all(np.isfinite(history["loss"])) and history["loss"][-1] < history["loss"][0], history["loss"]
    assert all(np.isfinite(w).all() for w in vae.get_weights())
    path = tmp_path / "model.keras"
    vae.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.missing_data
    np.testing.assert_allclose(loaded.elbo(images[:8], seed=1), vae.elbo(images[:8], seed=1), rtol=1e-5)
    # Completion takes the NaN pixels as the missing ones when no mask is given.
    completed = loaded.complete(images[:4], num_samples=50, seed=0).numpy()
    assert np.isfinite(completed).all()
    np.testing.assert_array_equal(completed[np.isfinite(images[:4])], images[:4][np.isfinite(images[:4])])


def test_nan_in_a_model_without_missing_data_is_a_clear_error(binarized_mnist):
    images = binarized_mnist[0][:64].copy()
    images[0, 0, 0, 0] = np.nan
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=2, seed=0)
    vae.compile()
    for call in (lambda: vae.fit(images, epochs=1, verbose=0), lambda: vae.elbo(images), lambda: vae.encode(images)):
        with pytest.raises(ValueError, match="1 NaN values.*missing_data=True"):
            call()
    with pytest.raises(ValueError, match="Nothing to complete: the images hold no NaN"):
        vae.complete(binarized_mnist[0][:2])
    with pytest.raises(ValueError, match="does not train on images with missing pixels"):
        tfvae.SemiSupervisedVAE(*tfvae.networks.image_networks((28, 28, 1), 2, num_classes=10, missing_data=True),
                                tfvae.networks.mlp_classifier((28, 28, 1), 10))


def test_missing_random_hides_a_fixed_share_of_pixels_per_image():
    options = {"name": "mnist", "split": "test[:500]", "data_dir": MNIST_DIR, "download": False, "batch_size": 100,
               "shuffle": False, "binarize": None}
    dataset, info = load_dataset(missing="random:0.3", seed=1, return_info=True, **options)
    first, second = collect(dataset)[0], collect(dataset)[0]
    complete = collect(load_dataset(**options))[0]
    assert abs(info.missing_share - 0.3) < 0.01 and abs(np.isnan(first).mean() - info.missing_share) < 1e-9
    np.testing.assert_array_equal(np.isnan(first), np.isnan(second))  # the data set is incomplete, not each epoch
    np.testing.assert_array_equal(first[~np.isnan(first)], complete[~np.isnan(first)])
    other = collect(load_dataset(missing="random:0.3", seed=2, **options))[0]
    assert not np.array_equal(np.isnan(first), np.isnan(other))
    for bad in ("top_half", "random:1.5", "random"):
        with pytest.raises(ValueError, match="random:"):
            load_dataset(missing=bad, **options)


def test_float_npz_images_with_nan_load_as_missing_pixels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((50, 6, 5)).astype(np.float32)
    images[rng.random(images.shape) < 0.25] = np.nan
    np.savez(tmp_path / "data.npz", x_train=images, x_test=np.nan_to_num(images))
    dataset, info = load_dataset("mine", data_dir=tmp_path / "data.npz", binarize=None, shuffle=False, batch_size=10,
                                 return_info=True)
    loaded = collect(dataset)[0]
    np.testing.assert_array_equal(np.isnan(loaded[..., 0]), np.isnan(images))
    np.testing.assert_allclose(loaded[..., 0][~np.isnan(images)], images[~np.isnan(images)], atol=0.5 / 255)
    assert info.missing_share == pytest.approx(np.isnan(images).mean())
    assert load_dataset("mine", data_dir=tmp_path / "data.npz", split="test", return_info=True)[1].missing_share == 0
    np.savez(tmp_path / "bad.npz", x_train=images * 255)
    with pytest.raises(DataUnavailable, match=r"float images with values outside \[0, 1\]"):
        load_dataset("mine", data_dir=tmp_path / "bad.npz")


def test_cli_refuses_a_missing_option_it_cannot_use(tmp_path):
    for extra, message in ((["--missing", "top_half"], "--missing 'top_half'"),
                           (["--missing", "random:0.5", "--model", "semi-supervised"],
                            "--missing applies to --model vae or conditional, not to --model semi-supervised"),
                           (["--missing", "random:0.5", "--model", "hierarchical"],
                            "--missing applies to --model vae or conditional, not to --model hierarchical"),
                           (["--architecture", "conv", "--model", "hierarchical"],
                            "--architecture applies to --model vae or conditional or semi-supervised or m2, not to --model hierarchical")):
        result = invoke_cli("train", *MNIST_CLI, "--output-dir", tmp_path / "run", *extra)
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output


# Real data ------------------------------------------------------------------------------------


def pixel_accuracy(means, truth, missing):
    return float(np.sum(((means > 0.5) == (truth > 0.5)) * missing) / np.sum(missing))


@pytest.mark.slow
def test_a_model_trained_with_half_the_pixels_missing_completes_nearly_as_well(binarized_mnist):
    train, held_out = binarized_mnist
    incomplete = train.copy()
    incomplete[np.random.default_rng(0).random(train.shape) < 0.5] = np.nan
    models = {}
    for name, data in (("complete", train), ("incomplete", incomplete)):
        keras.utils.set_random_seed(0)
        models[name] = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, missing_data=name == "incomplete", seed=0)
        models[name].compile()
        models[name].fit(data, batch_size=100, epochs=10, verbose=0)
    images, pixel_means = held_out[:200], train.mean(axis=0)
    for mask in ("top_half", "random:0.5"):
        observed = masks.make(mask, images.shape[1:], seed=0)
        missing = np.broadcast_to(~observed, images.shape)
        baseline = pixel_accuracy(np.broadcast_to(pixel_means, images.shape), images, missing)
        accuracy = {name: {method: pixel_accuracy(vae.complete(images, observed, method=method, num_samples=500, seed=0).numpy(),
                                                  images, missing) for method in METHODS}
                    for name, vae in models.items()}
        assert min(accuracy["incomplete"].values()) > baseline + 0.02, (mask, accuracy, baseline)
        # Half the pixels cost some accuracy (3 points at random:0.5 here; benchmarks/completion.py measures it), not most.
        assert accuracy["incomplete"]["importance"] >= accuracy["complete"]["importance"] - 0.05, (mask, accuracy)
        model_log_lik = float(np.mean(models["incomplete"].completion_log_likelihood(images, observed, num_samples=500,
                                                                                     seed=0)))
        clipped = np.clip(np.broadcast_to(pixel_means, images.shape), 1e-6, 1 - 1e-6)
        baseline_log_lik = np.mean(np.sum(np.where(images > 0.5, np.log(clipped), np.log1p(-clipped)) * missing, (1, 2, 3)))
        assert model_log_lik > baseline_log_lik + 5, (mask, model_log_lik, baseline_log_lik)


@pytest.mark.slow
def test_cli_trains_on_incomplete_data_records_it_and_completes(tmp_path):

    run = tmp_path / "run"
    result = invoke_cli("train", *MNIST_CLI, "--train-split", "test[:8000]", "--eval-split", "test[9000:9200]",
                        "--missing", "random:0.5", "--epochs", "6", "--latent-dim", "8",
                        "--log-likelihood-samples", "50", "--output-dir", str(run),
                        "--export-dir", str(tmp_path / "export"), "--quiet")
    assert result.exit_code == 0, result.output
    assert read_run_config(run / "run_config.json").flat()["missing"] == "random:0.5"
    vae = tfvae.load_model(run)
    assert vae.missing_data
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["log_likelihood"])
    result = invoke_cli("complete", str(run), *MNIST_CLI, "--split", "test[9000:9050]", "--mask", "random:0.5",
                        "--method", "importance", "--num-samples", "200", "--out", str(tmp_path / "c.png"), "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["accuracy"] > metrics["baseline_accuracy"], metrics
    # The served model takes NaN for missing pixels in its elbo signature.
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "export" / "1"))
    images = collect(load_dataset("mnist", split="test[9000:9004]", data_dir=MNIST_DIR, download=False, binarize="static",
                                  shuffle=False))[0]
    images[:, :14] = np.nan
    out = served.signatures["elbo"](images=tf.constant(images))
    assert np.isfinite(out["elbo"].numpy()).all()
