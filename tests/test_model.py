"""The VAE model: training on real data, what fit/evaluate report, saving, seeds, callbacks, errors."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae.callbacks import DivergenceGuard, KLWarmup


def small_vae(**options):
    return tfvae.VAE.for_images((28, 28, 1), latent_dim=8, **options)


@pytest.mark.parametrize("jit_compile", [True, False])
def test_training_on_real_mnist_improves_held_out_elbo(binarized_mnist, jit_compile):
    train, held_out = binarized_mnist
    keras.utils.set_random_seed(0)
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, seed=0)
    vae.compile(jit_compile=jit_compile)
    before = float(np.mean(vae.elbo(held_out, seed=1)))
    history = vae.fit(train, batch_size=100, epochs=3, validation_data=(held_out,), verbose=0)
    after = float(np.mean(vae.elbo(held_out, seed=1)))
    assert before < -500  # an untrained Bernoulli decoder: ~784 log 2 nats
    assert after > before + 300 and after > -160, (before, after)
    assert history.history["val_elbo"][-1] > history.history["val_elbo"][0]
    assert vae.jit_compile is jit_compile


def test_fit_and_evaluate_report_the_independently_computed_terms(binarized_mnist):
    train, held_out = binarized_mnist
    keras.utils.set_random_seed(1)
    vae = small_vae(seed=1)
    vae.compile()
    history = vae.fit(train[:2000], batch_size=100, epochs=2, verbose=0).history
    for name in ("loss", "reconstruction", "kl", "elbo"):
        assert len(history[name]) == 2 and all(v != 0.0 for v in history[name])
    np.testing.assert_allclose(history["loss"], np.add(history["reconstruction"], history["kl"]), rtol=1e-5)
    np.testing.assert_allclose(history["elbo"], np.negative(history["loss"]), rtol=1e-5)

    reported = vae.evaluate(held_out, batch_size=250, verbose=0, return_dict=True)
    # KL is analytic, hence deterministic: recompute it in numpy from the encoder's outputs.
    posterior = vae.encode(held_out)
    loc, scale = posterior.mean().numpy(), posterior.stddev().numpy()
    kl = 0.5 * np.sum(scale**2 + loc**2 - 1 - 2 * np.log(scale), axis=-1)
    np.testing.assert_allclose(reported["kl"], kl.mean(), rtol=1e-4)
    # Reconstruction is a one-sample estimate: compare with many samples, within Monte-Carlo error.
    independent = vae.elbo_terms(held_out, num_samples=50, seed=3)["reconstruction"].numpy()
    assert abs(reported["reconstruction"] - independent.mean()) < 1.0, (reported, independent.mean())
    np.testing.assert_allclose(reported["loss"], reported["reconstruction"] + reported["kl"], rtol=1e-5)


def test_gradients_reach_every_weight_through_the_reparameterized_sample(binarized_mnist):
    train, _ = binarized_mnist
    vae = small_vae(seed=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(vae.objective_terms(train[:16], tf.constant([1, 2]))["loss"])
    gradients = tape.gradient(loss, vae.trainable_variables)
    network_variables = vae.encoder.trainable_variables + vae.decoder.trainable_variables
    assert {id(v) for v in vae.trainable_variables} == {id(v) for v in network_variables}
    for variable, gradient in zip(vae.trainable_variables, gradients):
        assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0, variable.path
    # The reconstruction term alone must also reach the encoder's scale: only the sample z depends on it.
    with tf.GradientTape() as tape:
        reconstruction = tf.reduce_mean(vae.objective_terms(train[:16], tf.constant([1, 2]))["reconstruction"])
    kernel = vae.encoder.to_params.kernel
    gradient = tape.gradient(reconstruction, kernel).numpy()
    assert np.abs(gradient[:, vae.latent_dim :]).max() > 0


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_all_zero_and_all_one_images_give_finite_loss_and_gradients(value):
    vae = small_vae(seed=3)
    vae.compile()
    x = np.full((64, 28, 28, 1), value, np.float32)
    history = vae.fit(x, batch_size=32, epochs=3, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert np.all(np.isfinite(vae.elbo(x).numpy()))


def test_keras_round_trip_gives_identical_encodings_and_optimizer_state(tmp_path, binarized_mnist):
    train, held_out = binarized_mnist
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=6, architecture="conv", beta=0.5, kl="monte_carlo", num_samples=2, seed=4)
    vae.compile(jit_compile=False)
    vae.fit(train[:256], batch_size=64, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    vae.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, tfvae.VAE)
    assert (loaded.kl, loaded.num_samples, float(loaded.beta), loaded.latent_dim) == ("monte_carlo", 2, 0.5, 6)
    assert loaded.jit_compile is False
    original, restored = vae.encode(held_out[:32]), loaded.encode(held_out[:32])
    np.testing.assert_array_equal(original.mean().numpy(), restored.mean().numpy())
    np.testing.assert_array_equal(original.stddev().numpy(), restored.stddev().numpy())
    assert int(loaded.optimizer.iterations) == int(vae.optimizer.iterations) == 4
    for a, b in zip(vae.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A fresh process with nothing but `import tfvae` loads it too.
    code = f"import tfvae; print(tfvae.load_model({str(path)!r}).latent_dim)"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert fresh.stdout.strip() == "6"


def test_fixed_seed_reproduces_a_run_and_noise_is_fresh_each_step(binarized_mnist):
    train, _ = binarized_mnist

    def run():
        keras.utils.set_random_seed(5)
        vae = small_vae(seed=5)
        vae.compile()
        history = vae.fit(train[:512], batch_size=64, epochs=2, shuffle=False, verbose=0).history
        return history["loss"], vae.get_weights()

    (loss_a, weights_a), (loss_b, weights_b) = run(), run()
    assert loss_a == loss_b
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)
    vae = small_vae(seed=6)
    seeds = [vae._seed().numpy().tolist() for _ in range(3)]
    assert len({tuple(s) for s in seeds}) == 3


def test_sample_and_reconstruct(binarized_mnist):
    _, held_out = binarized_mnist
    vae = small_vae(seed=7)
    means = vae.sample(5, seed=1).numpy()
    assert means.shape == (5, 28, 28, 1) and 0 < means.min() and means.max() < 1
    np.testing.assert_array_equal(means, vae.sample(5, seed=1).numpy())
    assert not np.array_equal(means, vae.sample(5, seed=2).numpy())
    draws = vae.sample(5, seed=1, mode="sample").numpy()
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_allclose(vae.reconstruct(held_out[:4]), vae.predict(held_out[:4], verbose=0), rtol=1e-5)


def test_tf_data_validation_early_stopping_and_checkpoint(tmp_path, binarized_mnist):
    train, held_out = binarized_mnist
    labels = np.zeros(len(train), np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((train[:1024], labels[:1024])).batch(128)
    validation = tf.data.Dataset.from_tensor_slices(held_out[:512]).batch(128)
    vae = small_vae(seed=8)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=1e9)
    checkpoint = keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", monitor="val_loss", save_best_only=True)
    history = vae.fit(dataset, validation_data=validation, epochs=5, callbacks=[stopper, checkpoint], verbose=0)
    assert len(history.history["val_loss"]) == 2  # the huge min_delta stops after patience runs out
    assert history.history["val_loss"][0] > 0
    assert keras.models.load_model(tmp_path / "best.keras").latent_dim == 8


def test_kl_warmup_anneals_beta(binarized_mnist):
    train, _ = binarized_mnist
    vae = small_vae(seed=9)
    vae.compile()
    history = vae.fit(train[:256], batch_size=128, epochs=4, callbacks=[KLWarmup(2, target=0.8)], verbose=0)
    assert history.history["beta"] == pytest.approx([0.0, 0.4, 0.8, 0.8])
    np.testing.assert_allclose(history.history["loss"][0], history.history["reconstruction"][0], rtol=1e-6)
    assert float(vae.beta) == pytest.approx(0.8)


def test_divergence_guard_stops_with_a_message():
    vae = small_vae()
    guard = DivergenceGuard()
    guard.set_model(vae)
    vae.stop_training = False  # as fit() does before the first batch
    guard.on_train_batch_end(3, {"loss": 12.0})
    assert guard.message is None and not vae.stop_training
    guard.on_train_batch_end(4, {"loss": float("nan")})
    assert vae.stop_training and "batch 4" in guard.message and "learning rate" in guard.message


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((4, 28, 28), np.float32), r"shape \(batch, 28, 28, 1\).*Add a channel axis"),
        (np.zeros((4, 32, 32, 1), np.float32), r"Received: shape=\(4, 32, 32, 1\)"),
        (np.zeros((4, 28, 28, 1), np.uint8), r"dtype=uint8.*/ 255"),
        (np.full((4, 28, 28, 1), 255.0, np.float32), r"in \[0.0, 1.0\].*values in \[255.0, 255.0\]"),
        (np.full((4, 28, 28, 1), np.nan, np.float32), r"finite"),
    ],
)
def test_bad_images_are_rejected_with_the_fix(x, message):
    vae = small_vae()
    vae.compile()
    for method in (vae.fit, vae.encode, vae.elbo, vae.log_likelihood):
        with pytest.raises(ValueError, match=message):
            method(x)


def test_bad_dataset_spec_and_latent_codes_are_rejected():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"Received: shape=\(None, 28, 28\)"):
        vae.fit(tf.data.Dataset.from_tensor_slices(np.zeros((4, 28, 28), np.float32)).batch(2))
    with pytest.raises(ValueError, match=r"latent codes of shape \(\.\.\., 8\)"):
        vae.decode(np.zeros((3, 5), np.float32))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"kl": "exact"}, r"Unknown kl 'exact'.*analytic.*monte_carlo"),
        ({"likelihood": "poisson"}, r"Unknown likelihood 'poisson'"),
        ({"architecture": "resnet"}, r"Unknown architecture 'resnet'"),
        ({"latent_dim": 0}, r"Expected latent_dim to be an integer >= 1. Received: latent_dim=0"),
        ({"beta": -1.0}, r"Expected beta >= 0"),
        ({"num_samples": 0}, r"Expected num_samples to be an integer >= 1"),
    ],
)
def test_bad_model_settings_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        tfvae.VAE.for_images((28, 28, 1), **options)
