"""Where the MLP VAE's training step goes (batch 128, steps_per_execution 16), with XLA on and off:
the step's matrix multiplies alone, its Adam update alone, the whole step on batches cached in
memory (no input pipeline work), the whole step as `fit` runs it on the real pipeline, and the
pipeline alone.

    python -m benchmarks.step_profile [--quick]
"""

import argparse
import statistics
import time

from benchmarks.common import report
from benchmarks.training_throughput import dense_training_flops_per_example, matmul_flops_per_second

BATCH = 128


def matmuls_only_ms(vae, jit, repeats):
    """Milliseconds for the matrix multiplies of one training step (forward, weight gradients,
    input gradients but the first layer's), at the step's own shapes, nothing else."""
    import keras
    import tensorflow as tf

    shapes = [tuple(layer.kernel.shape) for network in (vae.encoder, vae.decoder)
              for layer in network._flatten_layers() if isinstance(layer, keras.layers.Dense)]
    weights = [tf.random.normal(shape) for shape in shapes]
    inputs = [tf.random.normal((BATCH, m)) for m, _ in shapes]
    grads = [tf.random.normal((BATCH, n)) for _, n in shapes]

    @tf.function(jit_compile=jit)
    def step():
        total = 0.0
        for i, (w, x, g) in enumerate(zip(weights, inputs, grads)):
            total += tf.reduce_sum(x @ w) + tf.reduce_sum(tf.matmul(x, g, transpose_a=True))
            if i:
                total += tf.reduce_sum(tf.matmul(g, w, transpose_b=True))
        return total

    step().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def adam_update_ms(vae, jit, repeats):
    """Milliseconds for one Adam update of every trainable weight, given the gradients."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(1e-3)
    weights = vae.trainable_variables
    grads = [tf.random.normal(w.shape, stddev=1e-3) for w in weights]
    optimizer.build(weights)
    update = tf.function(lambda: optimizer.apply(grads, weights), jit_compile=jit)
    update()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        update()
        weights[0].numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def fit_ms_per_step(vae, datasets, steps, rounds):
    """Milliseconds per step of `fit` on each of `datasets` (`steps` batches an epoch): the median
    over epochs, the datasets taking turns so that the machine's drift affects them alike."""
    for dataset in datasets.values():
        vae.fit(dataset, epochs=1, verbose=0)
    times = {name: [] for name in datasets}
    for _ in range(rounds):
        for name, dataset in datasets.items():
            start = time.perf_counter()
            vae.fit(dataset, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) / steps for name, t in times.items()}


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

    import tfvae
    from tfvae.data import load_dataset

    split, rounds = ("train[:20000]", 2) if args.quick else ("train", 5)
    dataset, info = load_dataset("fashion_mnist", split=split, batch_size=BATCH, download=False, drop_remainder=True, return_info=True)
    steps = info.num_examples // BATCH
    cached = dataset.take(steps).cache()
    peak = matmul_flops_per_second()
    flops_per_step = BATCH * dense_training_flops_per_example(tfvae.VAE.for_images((28, 28, 1), latent_dim=20))
    rows = []
    for jit in (True, False):
        vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, seed=0)
        vae.compile(jit_compile=jit, steps_per_execution=16)
        parts = {
            "matmuls only": matmuls_only_ms(vae, jit, repeats=50 * rounds),
            "Adam update only": adam_update_ms(vae, jit, repeats=50 * rounds),
            **fit_ms_per_step(vae, {"step, batches cached in memory": cached, "step, fit on the pipeline": dataset}, steps, rounds),
        }
        whole = parts["step, fit on the pipeline"]
        rows += [{"jit": jit, "part": part, "ms_per_step": ms, "share_of_fit_step": ms / whole,
                  "fraction_of_matmul_peak": None if part == "Adam update only" else flops_per_step / (ms / 1e3) / peak}
                 for part, ms in parts.items()]
    rows.append({"part": "input pipeline alone", "ms_per_step": pipeline_ms_per_batch(dataset, steps)})
    rows.append({"part": "matmul 2048^2 peak", "fraction_of_matmul_peak": 1.0, "gflops": peak / 1e9})
    report("step_profile", rows)


if __name__ == "__main__":
    main()
