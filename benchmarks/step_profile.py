"""Where the MLP VAE's training step goes (batch 128, 16 steps per execution), with XLA on and off:
the step's matrix multiplies alone, its Adam update alone, its reparameterization noise under each
random-number algorithm, the whole step on batches cached in memory and on the real input pipeline
(tfvae's single-program execution against Keras's one launch per step), and the pipeline alone.

Parts measured alone run 16 times in one compiled program, as the fused training step does.

    python -m benchmarks.step_profile [--quick]
"""

import argparse
import statistics
import time

from benchmarks.common import report, vae_for_images
from benchmarks.training_throughput import dense_training_flops_per_example, matmul_flops_per_second

BATCH = 128
STEPS_PER_EXECUTION = 16


def per_step_ms(part, jit, repeats):
    """Milliseconds per call of `part(i)` (step i of the loop; returns a scalar), run STEPS_PER_EXECUTION
    times in one compiled loop: the median over `repeats` executions."""
    import tensorflow as tf

    @tf.function(jit_compile=jit)
    def execution():
        body = lambda i, total: (i + 1, total + part(i))
        return tf.while_loop(lambda i, _: i < STEPS_PER_EXECUTION, body, (tf.constant(0), tf.constant(0.0)))[1]

    execution().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        execution().numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times) / STEPS_PER_EXECUTION


def dense_kernel_shapes(vae):
    import keras

    return [tuple(layer.kernel.shape) for network in (vae.encoder, vae.decoder)
            for layer in network._flatten_layers() if isinstance(layer, keras.layers.Dense)]


def matmuls_part(vae):
    """The matrix multiplies of one training step (forward, weight gradients, input gradients but
    the first layer's) at the step's own shapes, nothing else."""
    import tensorflow as tf

    shapes = dense_kernel_shapes(vae)
    weights = [tf.random.normal(shape) for shape in shapes]
    inputs = [tf.random.normal((BATCH, m)) for m, _ in shapes]
    grads = [tf.random.normal((BATCH, n)) for _, n in shapes]

    def part(i):
        # Inputs that change with the step, so that the compiler cannot hoist the products out of the loop.
        shift = tf.cast(i, tf.float32)
        total = 0.0
        for w, x, g in zip(weights, [x + shift for x in inputs], grads):
            total += tf.reduce_sum(x @ w) + tf.reduce_sum(tf.matmul(x, g, transpose_a=True))
            if x.shape[1] != 784:  # the first layer's input is data: no input gradient
                total += tf.reduce_sum(tf.matmul(g, w, transpose_b=True))
        return total

    return part


def adam_part(vae):
    """One Adam update of every trainable weight, given gradients."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(1e-3)
    weights = vae.trainable_variables
    grads = [tf.random.normal(w.shape, stddev=1e-3) for w in weights]
    optimizer.build(weights)

    def part(i):
        optimizer.apply(grads, weights)
        return tf.reduce_sum(weights[-1])

    return part


def noise_part(vae, algorithm):
    """The step's reparameterization noise, (BATCH, latent) normals from a fresh seed, by `algorithm`."""
    import tensorflow as tf

    def part(i):
        seed = tf.cast(vae.seed_generator.next(), tf.int32)
        return tf.reduce_sum(tf.random.stateless_normal((BATCH, vae.latent_dim), seed=seed, alg=algorithm))

    return part


def fit_ms_per_step(models, datasets, steps, rounds):
    """Milliseconds per step of `fit` for each (model, dataset) pair, `steps` batches an epoch:
    the median over `rounds` epochs, all pairs taking turns so that the machine's drift affects them alike."""
    pairs = [(m, d) for m in models for d in datasets]
    for model, dataset in pairs:
        models[model].fit(datasets[dataset], epochs=1, verbose=0)
    times = {pair: [] for pair in pairs}
    for _ in range(rounds):
        for model, dataset in pairs:
            start = time.perf_counter()
            models[model].fit(datasets[dataset], epochs=1, verbose=0)
            times[model, dataset].append(time.perf_counter() - start)
    return {pair: 1e3 * statistics.median(t) / steps for pair, t in times.items()}


def pipeline_ms_per_batch(dataset, steps, rounds=3):
    import tensorflow as tf

    count = lambda: int(dataset.reduce(tf.constant(0), lambda total, batch: total + tf.shape(batch)[0]))
    count()
    start = time.perf_counter()
    for _ in range(rounds):
        count()
    return 1e3 * (time.perf_counter() - start) / (rounds * steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20k examples, two timed epochs")
    args = parser.parse_args()

    from tfvae.data import load_dataset

    split, rounds = ("train[:20000]", 2) if args.quick else ("train", 5)
    dataset, info = load_dataset("fashion_mnist", split=split, batch_size=BATCH, download=False, drop_remainder=True, return_info=True)
    steps = info.num_examples // BATCH
    datasets = {"batches cached in memory": dataset.take(steps).cache(), "input pipeline": dataset}
    peak = matmul_flops_per_second()
    flops_per_step = BATCH * dense_training_flops_per_example(vae_for_images(input_shape=(28, 28, 1), latent_dim=20))

    settings = {"XLA, one program per execution (tfvae)": (True, True),
                "XLA, one launch per step (Keras's loop)": (True, False),
                "no XLA": (False, True)}
    models = {}
    for name, (jit, fused) in settings.items():
        models[name] = vae_for_images(fused=fused, input_shape=(28, 28, 1), latent_dim=20, seed=0)
        models[name].compile(jit_compile=jit, steps_per_execution=STEPS_PER_EXECUTION)

    rows = []
    for jit in (True, False):
        vae = models["no XLA" if not jit else "XLA, one program per execution (tfvae)"]
        parts = {"matmuls only": matmuls_part(vae), "Adam update only": adam_part(vae)}
        if jit:
            parts.update({f"noise, {alg}": noise_part(vae, alg) for alg in ("auto_select", "philox")})
        for name, part in parts.items():
            ms = per_step_ms(part, jit, repeats=20 * rounds)
            rows.append({"setting": "XLA" if jit else "no XLA", "part": name, "ms_per_step": ms,
                         "fraction_of_matmul_peak": flops_per_step / (ms / 1e3) / peak if name == "matmuls only" else None})
    for (setting, data), ms in fit_ms_per_step(models, datasets, steps, rounds).items():
        rows.append({"setting": setting, "part": f"whole step, {data}", "ms_per_step": ms,
                     "fraction_of_matmul_peak": flops_per_step / (ms / 1e3) / peak})
    rows.append({"part": "input pipeline alone, per batch", "ms_per_step": pipeline_ms_per_batch(dataset, steps)})
    rows.append({"part": "matmul 2048^2 peak", "fraction_of_matmul_peak": 1.0, "gflops": peak / 1e9})
    report("step_profile", rows)


if __name__ == "__main__":
    main()
