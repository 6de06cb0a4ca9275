"""Pictures of trained models: files written, not blank, the quantile grid, TensorBoard summaries, the CLI."""

import numpy as np
import pytest
from conftest import MNIST_CLI, invoke_cli, train_mnist_run
from PIL import Image

import tfvae
from tfvae import plots

EXPECTED = ("latent_space", "manifold", "interpolations", "kl_per_dimension", "training_curves")


def assert_picture(path, min_size=300):
    """A valid PNG of a readable size whose pixels are not all alike."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("L"), np.float32)
    assert width >= min_size and height >= min_size / 3, (path, image.size)
    assert pixels.var() > 100, (path, pixels.var())  # not blank


def test_the_manifold_grid_is_at_the_priors_quantiles():
    from scipy.stats import norm

    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=2, seed=0)
    values = plots.manifold_grid(vae, np.zeros(2), np.eye(2), size=5)
    gaussian = norm.ppf(np.linspace(0.05, 0.95, 5))  # Φ⁻¹(.05, .275, …, .95), Kingma & Welling's grid
    np.testing.assert_allclose(values, np.stack([gaussian, gaussian], axis=1), atol=0.02)
    # A mixture prior whose components sit at ±3 has no mass near 0: its quantiles are its own.
    mixture = tfvae.VAE.for_images((28, 28, 1), latent_dim=2, prior="mixture", seed=0)
    mixture.prior.set_weights([np.array([[-3.0, -3.0], [3.0, 3.0]] * 5, np.float32), np.full((10, 2), -3.0, np.float32),
                               np.zeros(10, np.float32)])
    values = plots.manifold_grid(mixture, np.zeros(2), np.eye(2), size=5)
    np.testing.assert_allclose(values[[0, 4]], [[-3.1, -3.1], [3.1, 3.1]], atol=0.1)
    assert np.all(np.abs(values[[1, 3]]) > 2.5)


def test_slerp_keeps_the_endpoints_and_follows_the_great_circle():
    start, end = np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]])
    path = plots.slerp(start, end, 3)
    np.testing.assert_allclose(path[0, 0], start[0])
    np.testing.assert_allclose(path[0, -1], end[0])
    # Halfway along a 90° arc: sin(45°)·start + sin(45°)·end, over sin(90°).
    np.testing.assert_allclose(path[0, 1], [np.sqrt(0.5), 2 * np.sqrt(0.5)], rtol=1e-6)
    same = plots.slerp(start, start, 4)  # parallel endpoints fall back to a straight line
    np.testing.assert_allclose(same[0], np.repeat(start, 4, axis=0))


@pytest.mark.slow
def test_explore_writes_every_picture_and_tensorboard_gets_images(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    run = train_mnist_run(tmp_path / "run", "test[:3000]", "test[9000:9500]", epochs=2, latent_dim=8)
    out = tmp_path / "pictures"
    result = invoke_cli("explore", str(run), *MNIST_CLI, "--split", "test[8000:9000]", "--out-dir", str(out))
    assert result.exit_code == 0, result.output
    for name in EXPECTED:
        assert_picture(out / f"{name}.png")

    accumulator = event_accumulator.EventAccumulator(str(run / "logs" / "images"), size_guidance={"tensors": 0})
    accumulator.Reload()
    plugins = {tag: accumulator.SummaryMetadata(tag).plugin_data.plugin_name for tag in accumulator.Tags()["tensors"]}
    assert plugins == {"samples": "images", "reconstructions": "images", "kl_per_dimension": "histograms",
                       "active_units": "scalars"}
    assert [event.step for event in accumulator.Tensors("samples")] == [0, 1]  # one grid per epoch


@pytest.mark.slow
def test_explore_without_labels_uses_one_colour_and_conditional_models_work(tmp_path, mnist_test_images, mnist_test_labels):
    data = tmp_path / "digits.npz"
    np.savez(data, x_train=(mnist_test_images[:2000, ..., 0] * 255).astype(np.uint8),
             x_test=(mnist_test_images[9000:, ..., 0] * 255).astype(np.uint8))
    own = ["--dataset", "digits", "--data-dir", str(data)]
    run = tmp_path / "run"
    result = invoke_cli("train", *own, "--epochs", "1", "--latent-dim", "2", "--log-likelihood-samples", "0",
                        "--output-dir", str(run), "--no-export", "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke_cli("explore", str(run), *own, "--out-dir", str(tmp_path / "pictures"))
    assert result.exit_code == 0, result.output
    assert "no labels: latent_space.png uses one colour" in result.output
    for name in EXPECTED:
        assert_picture(tmp_path / "pictures" / f"{name}.png")

    vae = tfvae.ConditionalVAE.for_images((28, 28, 1), num_classes=10, latent_dim=3, seed=0)
    vae.compile()
    vae.fit(mnist_test_images[:1000], mnist_test_labels[:1000], batch_size=100, epochs=1, verbose=0)
    written = plots.explore(vae, mnist_test_images[9000:9500], mnist_test_labels[9000:9500], tmp_path / "conditional")
    assert sorted(p.stem for p in written) == sorted(EXPECTED[:4])
    for path in written:
        assert_picture(path)


def test_explore_errors_are_messages(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke_cli("explore", str(empty), *MNIST_CLI)
    assert result.exit_code == 1 and "holds no checkpoint" in result.output and "Traceback" not in result.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke_cli("explore", str(empty), *MNIST_CLI, "--out-dir", str(blocker / "pictures"))
    assert result.exit_code == 1 and "--out-dir" in result.output and "not writable" in result.output
