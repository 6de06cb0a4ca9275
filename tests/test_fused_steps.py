"""Several steps in one XLA program (`steps_per_execution > 1`) against Keras's own step-by-step loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae


class StepByStep(tfvae.VAE):
    """The reference: Keras's own loop, one XLA launch per step."""

    def _fuses_steps(self):
        return False


def trained(model_class, **fit_options):
    keras.utils.set_random_seed(3)
    vae = model_class.for_images((28, 28, 1), latent_dim=8, seed=3)
    vae.compile(steps_per_execution=4)
    history = vae.fit(epochs=2, verbose=0, **fit_options).history
    return vae, history


def keep(batch):
    return tf.constant(True)


def batches_of_sizes(x, sizes):
    """A dataset of consecutive batches of `x` with the given sizes."""
    ends = np.cumsum(sizes)
    return tf.data.Dataset.from_generator(
        lambda: (x[end - size:end] for size, end in zip(sizes, ends)),
        output_signature=tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_data",
    [
        # 700 images in batches of 64: 11 batches, the last one smaller; 3 executions of 4 steps.
        lambda x: {"x": x[:700], "batch_size": 64, "shuffle": False},
        # A dataset of unknown length: the function itself must signal the end of the epoch.
        lambda x: {"x": tf.data.Dataset.from_tensor_slices(x[:640]).batch(64).filter(keep)},
        # Smaller batches mid-execution: the batches after one run one launch each, still in order.
        lambda x: {"x": batches_of_sizes(x, [64, 40, 64, 64, 64, 64, 20, 64, 64])},
    ],
    ids=["arrays with a smaller last batch", "dataset of unknown length", "smaller batches mid-execution"],
)
def test_fused_steps_train_exactly_like_one_step_per_launch(binarized_mnist, make_data):
    train, held_out = binarized_mnist
    fused, fused_history = trained(tfvae.VAE, **make_data(train))
    reference, reference_history = trained(StepByStep, **make_data(train))
    assert fused._fuses_steps() and not reference._fuses_steps()
    assert fused.optimizer.iterations.numpy() == reference.optimizer.iterations.numpy()
    for a, b in zip(fused.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name in ("loss", "reconstruction", "kl", "elbo"):
        np.testing.assert_allclose(fused_history[name], reference_history[name], rtol=1e-5)
    np.testing.assert_allclose(
        fused.evaluate(held_out[:500], batch_size=64, verbose=0),
        reference.evaluate(held_out[:500], batch_size=64, verbose=0),
        rtol=1e-5,
    )


def test_steps_are_not_fused_without_xla_with_one_step_per_execution_or_with_convolutions():
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=8)
    vae.compile(steps_per_execution=8, jit_compile=False)
    assert not vae._fuses_steps()
    vae.compile(steps_per_execution=1)
    assert not vae._fuses_steps()
    vae.compile(steps_per_execution=8)
    assert vae._fuses_steps()
    conv = tfvae.VAE.for_images((28, 28, 1), latent_dim=8, architecture="conv")
    conv.compile(steps_per_execution=8)
    assert not conv._fuses_steps()


class ConditionalStepByStep(tfvae.ConditionalVAE):
    def _fuses_steps(self):
        return False


@pytest.mark.slow
def test_arrays_with_labels_gathered_inside_the_program_train_exactly_like_a_gathering_pipeline(binarized_mnist,
                                                                                               mnist_test_labels):
    """Fitting arrays, the fused program gathers each batch (images and labels) from them by the pipeline's indices."""
    train, _ = binarized_mnist
    models, histories = [], []
    for model_class in (tfvae.ConditionalVAE, ConditionalStepByStep):
        keras.utils.set_random_seed(3)
        models.append(model_class.for_images((28, 28, 1), num_classes=10, latent_dim=8, seed=3))
        models[-1].compile(steps_per_execution=4)
        histories.append(models[-1].fit(train[:700], mnist_test_labels[:700], batch_size=64, epochs=2, verbose=0).history)
    fused, reference = models
    assert fused._fuses_steps() and not reference._fuses_steps()
    for a, b in zip(fused.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-5)


def test_fitting_arrays_leaves_the_fused_function_for_datasets_and_an_epoch_too_short_to_fuse_still_trains(binarized_mnist):
    train, _ = binarized_mnist
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=8, seed=3)
    vae.compile(steps_per_execution=4)
    vae.fit(train[:512], batch_size=64, epochs=1, verbose=0)  # 8 steps: fused, gathering from the arrays
    fused = vae.train_function
    vae.fit(tf.data.Dataset.from_tensor_slices(train[:256]).batch(64), epochs=1, verbose=0)  # batches, not indices
    assert vae.train_function is fused and vae.optimizer.iterations.numpy() == 8 + 4
    history = vae.fit(train[:50], batch_size=64, epochs=2, verbose=0).history  # 1 step an epoch: not fused
    assert not vae._fuses_steps() and np.all(np.isfinite(history["loss"])) and vae.optimizer.iterations.numpy() == 14
