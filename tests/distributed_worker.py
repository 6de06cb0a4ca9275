"""Run by tests/test_distributed.py in fresh processes (devices are fixed at TensorFlow start-up).

    python distributed_worker.py mirrored-step OUT.npz
    python distributed_worker.py mirrored-fit MNIST_DIR OUT.json
    python distributed_worker.py train CONFIG.json OUT.npz     (TF_CONFIG set by the caller)
"""

import json
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.getLogger("tfvae").addHandler(logging.StreamHandler())  # tfvae's notes on stderr, as a user would see them
logging.getLogger("tfvae").setLevel(logging.INFO)

import tensorflow as tf

if sys.argv[1].startswith("mirrored"):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np

import tfvae
from tfvae import strategies

SHAPE, LATENT, SEED, LEARNING_RATE = (6, 5, 1), 3, 7, 0.05


def mirrored_step(out_path):
    """One SGD step under MirroredStrategy, and the same step computed by hand on one device."""
    x = (np.random.default_rng(0).random((8, *SHAPE)) < 0.4).astype(np.float32)
    strategy = strategies.make_strategy("mirrored")
    with strategy.scope():
        vae = tfvae.VAE.for_images(SHAPE, latent_dim=LATENT, seed=SEED)
        vae.compile(keras.optimizers.SGD(LEARNING_RATE))
    before = [w.numpy() for w in vae.trainable_variables]
    step_seed = tf.cast(vae.seed_generator.state.value, tf.int32)

    reference = tfvae.VAE.for_images(SHAPE, latent_dim=LATENT, seed=SEED)
    reference.set_weights(vae.get_weights())
    with tf.GradientTape() as tape:
        halves = [
            reference.objective_terms(x[4 * r : 4 * (r + 1)], tf.random.experimental.stateless_fold_in(step_seed, r))["loss"]
            for r in range(2)
        ]
        loss = tf.reduce_mean(tf.concat(halves, 0))
    gradients = tape.gradient(loss, reference.trainable_variables)

    history = vae.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    after = [w.numpy() for w in vae.trainable_variables]
    out = {"replicas": strategy.num_replicas_in_sync, "jit": bool(vae.jit_compile),
           "fit_loss": history["loss"][0], "reference_loss": float(loss)}
    for i, (b, a, g) in enumerate(zip(before, after, gradients)):
        out[f"applied_{i}"] = (b - a) / LEARNING_RATE
        out[f"reference_{i}"] = g.numpy()
    np.savez(out_path, **out)


def mirrored_fit(mnist_dir, out_path):
    """Held-out ELBO after the same short training on one device and on two mirrored replicas."""
    from tfvae.data import load_dataset

    train = load_dataset("mnist", split="test[:4096]", data_dir=mnist_dir, batch_size=128, drop_remainder=True)
    held_out = tfvae.evaluation.collect(
        load_dataset("mnist", split="test[8000:]", data_dir=mnist_dir, binarize="static", shuffle=False)
    )[0]
    results = {}
    for name in ("one-device", "mirrored"):
        keras.utils.set_random_seed(SEED)
        strategy = strategies.make_strategy(name)
        with strategy.scope():
            vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=10, seed=SEED)
            vae.compile()
        before = float(np.mean(vae.elbo(held_out, seed=0)))
        vae.fit(train, epochs=3, verbose=0)
        results[name] = {"before": before, "after": float(np.mean(vae.elbo(held_out, seed=0))),
                         "replicas": strategy.num_replicas_in_sync}
    with open(out_path, "w") as f:
        json.dump(results, f)


def train(config_path, out_path):
    """One worker of a multi-worker run: the library's `train`, then this worker's final weights."""
    from tfvae.training import RunConfig, train

    with open(config_path) as f:
        config = RunConfig.from_json(json.load(f))
    result = train(config, verbose=2)
    np.savez(out_path, *[w.numpy() for w in result.model.weights if w.trainable])


if __name__ == "__main__":
    {"mirrored-step": mirrored_step, "mirrored-fit": mirrored_fit, "train": train}[sys.argv[1]](*sys.argv[2:])
