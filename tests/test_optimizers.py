"""AveragingAdam: its average against one computed step by step in NumPy, and its config."""

import keras
import numpy as np

from tfvae.optimizers import AveragingAdam


def test_fit_ends_on_the_warmed_up_average_of_every_steps_weights():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(AveragingAdam(0.05, ema_momentum=0.9), "mse", steps_per_execution=1)
    start = [w.numpy().copy() for w in model.trainable_weights]
    steps = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: steps.append([w.numpy().copy() for w in model.trainable_weights]))
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    model.fit(x, x[:, :2] * 3.0, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[record])
    expected = start
    for t, weights in enumerate(steps):  # momentum min(0.9, (1 + t) / (10 + t)): 0.1, 0.18, ... then 0.9
        momentum = min(0.9, (1 + t) / (10 + t))
        expected = [momentum * average + (1 - momentum) * w for average, w in zip(expected, weights)]
    for final, average in zip(model.trainable_weights, expected):
        np.testing.assert_allclose(final.numpy(), average, rtol=1e-5, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(expected, steps[-1])) > 1e-3  # not the last step's weights


def test_averaging_adam_round_trips_its_config():
    optimizer = AveragingAdam(3e-4, ema_momentum=0.99)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is AveragingAdam and restored.use_ema
    assert (restored.ema_momentum, float(restored.learning_rate)) == (0.99, np.float32(3e-4))
