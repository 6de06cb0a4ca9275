"""M1+M2: M2 on the codes of a trained, frozen VAE, checked against M1's posterior, real data, saving, errors."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae.data.labels import keep_labels

SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def m1(binarized_mnist):
    """A plain VAE (M1) after three epochs on the 8000 training images, no labels."""
    keras.utils.set_random_seed(0)
    vae = tfvae.VAE.for_images(SHAPE, latent_dim=6, seed=0)
    vae.compile()
    vae.fit(binarized_mnist[0], batch_size=100, epochs=3, verbose=0)
    return vae


def stacked(m1, **options):
    return tfvae.StackedSemiSupervisedVAE.on_codes_of(m1, 10, latent_dim=3, hidden_units=(32,), seed=0, **options)


@pytest.fixture(scope="module")
def trained(m1, binarized_mnist, mnist_test_labels):
    """M1+M2 after three epochs on the 8000 training images, 100 of them labeled, and M1's weights before it."""
    m1_weights = [w.numpy().copy() for w in m1.weights]
    keras.utils.set_random_seed(0)
    model = stacked(m1)
    model.compile()
    model.fit(binarized_mnist[0], keep_labels(mnist_test_labels[:8000], 100, seed=0), batch_size=100, epochs=3, verbose=0)
    return model, m1_weights


def test_training_leaves_m1_unchanged_and_learns_m2_only(trained):
    model, m1_weights = trained
    for before, after in zip(m1_weights, model.m1.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert {id(v) for v in model.trainable_variables} == {id(v) for v in model.m2.trainable_variables}


def test_m2_learns_from_draws_of_m1s_posterior(trained, binarized_mnist):
    model, _ = trained
    images = tf.constant(binarized_mnist[1][:5])
    posterior = model.m1.encode(images)
    draws = np.stack([model._codes(images, tf.constant([seed, 1], tf.int32)).numpy() for seed in range(2000)])
    draws = draws.reshape(2000, 5, 6)  # (draws, B, latent): codes travel as (B, 1, 1, latent)
    scale = posterior.stddev().numpy()
    # Mean within 4 standard errors of the posterior mean; spread within 10% of the posterior's.
    np.testing.assert_array_less(np.abs(draws.mean(0) - posterior.mean().numpy()), 4 * scale / np.sqrt(2000))
    np.testing.assert_allclose(draws.std(0), scale, rtol=0.1)


def test_classify_is_m2s_classifier_at_m1s_posterior_mean(trained, binarized_mnist):
    model, _ = trained
    images = binarized_mnist[1][:20]
    codes = model.m1.encode(images).mean().numpy().reshape(20, 1, 1, 6)
    np.testing.assert_allclose(model.classify(images).probs_parameter(), model.m2.classify(codes).probs_parameter(),
                               atol=1e-6)
    np.testing.assert_allclose(model.predict(images, verbose=0), model.m2.classify(codes).probs_parameter(), atol=1e-6)


def test_m1_plus_m2_classifies_held_out_digits_from_100_labels(trained, binarized_mnist, mnist_test_labels):
    model, _ = trained
    accuracy = model.accuracy(binarized_mnist[1], mnist_test_labels[8000:])
    predictions = model.classify(binarized_mnist[1]).mode().numpy()
    assert accuracy == pytest.approx(np.mean(predictions == mnist_test_labels[8000:]), abs=1e-9)
    assert accuracy > 0.5, accuracy  # chance is 0.1
    results = model.evaluate(binarized_mnist[1], mnist_test_labels[8000:], batch_size=100, verbose=0, return_dict=True)
    assert results["accuracy"] == pytest.approx(accuracy, abs=1e-6) and np.isfinite(results["elbo"])


def test_m1_plus_m2_round_trips_through_a_keras_file(trained, binarized_mnist, mnist_test_labels, tmp_path):
    model, _ = trained
    model.save(tmp_path / "m1m2.keras")
    loaded = keras.models.load_model(tmp_path / "m1m2.keras")
    images = binarized_mnist[1][:50]
    assert type(loaded) is tfvae.StackedSemiSupervisedVAE and loaded.labeled_fraction == pytest.approx(100 / 8000)
    assert type(loaded.optimizer).__name__ == "AveragingAdam" and loaded.optimizer.ema_momentum == 0.999
    np.testing.assert_allclose(loaded.classify(images).probs_parameter(), model.classify(images).probs_parameter(), atol=1e-6)
    # M1 stays frozen after loading, and training goes on from the restored optimizer state.
    assert len(loaded.trainable_variables) == len(model.trainable_variables)
    steps = int(model.optimizer.iterations)
    assert steps > 0 and int(loaded.optimizer.iterations) == steps
    m1_weights = [w.numpy().copy() for w in loaded.m1.weights]
    loaded.fit(binarized_mnist[0][:1000], keep_labels(mnist_test_labels[:1000], 100, seed=0), batch_size=100, verbose=0)
    assert int(loaded.optimizer.iterations) > steps
    for before, after in zip(m1_weights, loaded.m1.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_m1_plus_m2_ends_on_averaged_weights_and_its_last_checkpoint_holds_them(m1, binarized_mnist, mnist_test_labels,
                                                                              tmp_path):
    from tfvae.checkpoints import AtomicCheckpoint
    from tfvae.optimizers import AveragingAdam

    plain = tfvae.VAE.for_images(SHAPE, latent_dim=2)
    plain.compile()
    assert not plain.optimizer.use_ema  # a VAE trains on its last step's weights
    pixels_m2 = tfvae.SemiSupervisedVAE.for_images(SHAPE, num_classes=10, latent_dim=2)
    pixels_m2.compile()
    assert isinstance(pixels_m2.optimizer, AveragingAdam)  # M2 on pixels averages too
    keras.utils.set_random_seed(0)
    model = stacked(m1)
    model.compile()
    assert isinstance(model.optimizer, AveragingAdam) and model.optimizer.ema_momentum == 0.999
    steps = []
    last_step = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: steps.append([w.numpy().copy() for w in model.m2.trainable_weights]))
    labels = keep_labels(mnist_test_labels[:1000], 100, seed=0)
    model.fit(binarized_mnist[0][:1000], labels, batch_size=100, epochs=2, verbose=0,
              callbacks=[last_step, AtomicCheckpoint(tmp_path)])
    averaged = [w.numpy() for w in model.m2.trainable_weights]
    assert max(np.abs(a - b).max() for a, b in zip(averaged, steps[-1])) > 1e-4  # fit ended on the average, not the step
    saved = keras.models.load_model(tmp_path / "epoch-0002.keras")
    for in_file, in_model in zip(saved.m2.trainable_weights, averaged):
        np.testing.assert_array_equal(in_file.numpy(), in_model)
    assert json.loads((tmp_path / "latest.json").read_text())["epoch"] == 2


def test_m1_plus_m2_rejects_models_and_data_it_cannot_use(m1, binarized_mnist):
    conditional = tfvae.ConditionalVAE.for_images(SHAPE, num_classes=10, latent_dim=6)
    with pytest.raises(ValueError, match="unconditional VAE of whole images"):
        tfvae.StackedSemiSupervisedVAE.on_codes_of(conditional, 10)
    pixels_m2 = tfvae.SemiSupervisedVAE.for_images(SHAPE, num_classes=10, latent_dim=3)
    with pytest.raises(ValueError, match=r"m2 to take M1's codes, of shape \(1, 1, 6\)"):
        tfvae.StackedSemiSupervisedVAE(m1, pixels_m2)
    with pytest.raises(TypeError, match="m2 a tfvae.SemiSupervisedVAE"):
        tfvae.StackedSemiSupervisedVAE(m1, m1)
    model = stacked(m1)
    model.compile()
    images = binarized_mnist[0][:100]
    with pytest.raises(ValueError, match="labeled_fraction = 100 / 60000"):
        model.fit(tf.data.Dataset.from_tensor_slices((images, np.zeros(100, np.int64))).batch(50), verbose=0)
    with pytest.raises(ValueError, match="-1 for unlabeled examples"):
        model.fit(images, np.full(100, 10), verbose=0)
    with pytest.raises(ValueError, match=r"shape \(batch, 28, 28, 1\)"):
        model.classify(images.reshape(100, 784))


@pytest.mark.slow
def test_m1_plus_m2_exports_m1s_signatures_and_its_classifier(trained, binarized_mnist, tmp_path):
    from tfvae.export import export_saved_model

    model, _ = trained
    path = export_saved_model(model, tmp_path / "m1m2")
    served = tf.saved_model.load(str(path))
    images = tf.constant(binarized_mnist[1][:9])
    np.testing.assert_allclose(served.signatures["classify"](images=images)["probabilities"],
                               model.classify(images).probs_parameter(), atol=1e-5)
    np.testing.assert_allclose(served.signatures["encode"](images=images)["loc"], model.m1.encode(images).mean(), atol=1e-5)
    np.testing.assert_allclose(served.signatures["sample"](count=tf.constant(3), seed=tf.constant(4))["images"],
                               model.m1.sample(3, seed=4), atol=1e-5)
    record = json.loads((path / "assets.extra" / "tfvae.json").read_text())
    assert record["model"] == "StackedSemiSupervisedVAE" and record["num_classes"] == 10 and record["latent_dim"] == 6
    assert {"classify", "encode", "sample", "complete"} <= set(record["signatures"])
