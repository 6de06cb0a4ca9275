"""Training throughput (examples/s, steady state) against this machine's float32 matmul rate,
and what the input pipeline delivers alone. MLP 784-400-20 and conv, Bernoulli, batch 128,
dynamically binarized Fashion-MNIST (Debian's dataset-fashion-mnist).

    python -m benchmarks.training_throughput [--quick]
"""

import argparse
import statistics
import time

from benchmarks.common import report, vae_for_images


def matmul_flops_per_second(n=2048, repeats=20):
    """float32 matmul rate with TensorFlow's default thread pool (the same one training uses)."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    step = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step().numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def dense_training_flops_per_example(vae):
    """Matmul FLOPs of one example's training step: 2 per multiply-add, for the forward pass,
    the weight gradients and the input gradients (none for the first layer, whose input is data)."""
    import keras

    layers = [
        layer for network in (vae.encoder, vae.decoder) for layer in network._flatten_layers()
        if isinstance(layer, keras.layers.Dense)
    ]
    sizes = [2 * layer.kernel.shape[0] * layer.kernel.shape[1] for layer in layers]
    return 3 * sum(sizes) - sizes[0]


def interleaved_throughput(models, dataset, num_examples, rounds):
    """Steady-state examples/s of each model: the median over `rounds` epochs, the models taking
    turns epoch by epoch so that the machine's drift affects them alike (after a compiling epoch)."""
    for vae in models.values():
        vae.fit(dataset, epochs=1, verbose=0)
    seconds = {key: [] for key in models}
    for _ in range(rounds):
        for key, vae in models.items():
            start = time.perf_counter()
            vae.fit(dataset, epochs=1, verbose=0)
            seconds[key].append(time.perf_counter() - start)
    return {key: num_examples / statistics.median(times) for key, times in seconds.items()}


def pipeline_throughput(dataset, num_examples, epochs=3):
    """Examples/s the dataset delivers consumed inside TensorFlow's runtime, as fit consumes it
    (a Python loop would add its own per-batch cost)."""
    import tensorflow as tf

    count = lambda: int(dataset.reduce(tf.constant(0), lambda total, batch: total + tf.shape(batch)[0]))
    count()
    start = time.perf_counter()
    for _ in range(epochs):
        count()
    return epochs * num_examples / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20k examples, two timed epochs per setting")
    args = parser.parse_args()

    from tfvae.data import load_dataset

    split, rounds = ("train[:20000]", 2) if args.quick else ("train", 5)
    dataset, info = load_dataset("fashion_mnist", split=split, batch_size=128, download=False, drop_remainder=True, return_info=True)
    num_examples = (info.num_examples // 128) * 128
    peak_before = matmul_flops_per_second()
    rows = []
    # Settings (XLA, steps per execution, fused into one program) compared with each other take turns in one
    # group; the conv group gets fewer rounds (its epochs are ~10x longer).
    mlp = [(True, 16, True), (True, 16, False), (False, 16, True), (True, 1, True), (False, 1, True)]
    groups = [("mlp", mlp, rounds), ("conv", [(True, 16, True), (False, 16, True)], max(2, rounds - 2))]
    for architecture, settings, group_rounds in groups:
        models = {}
        for jit, steps_per_execution, fused in settings:
            vae = vae_for_images(fused, input_shape=(28, 28, 1), latent_dim=20, architecture=architecture, seed=0)
            vae.compile(jit_compile=jit, steps_per_execution=steps_per_execution)
            models[jit, steps_per_execution, fused] = vae
        throughputs = interleaved_throughput(models, dataset, num_examples, group_rounds)
        rows += [{"model": architecture, "jit": jit, "steps_per_execution": spe,
                  "execution": "one program" if models[jit, spe, fused]._fuses_steps() else "launch per step",
                  "examples_per_s": throughput}
                 for (jit, spe, fused), throughput in throughputs.items()]
    # The matmul rate drifts on this machine; the higher of two readings makes the fraction conservative.
    peak = max(peak_before, matmul_flops_per_second())
    flops = dense_training_flops_per_example(vae_for_images(input_shape=(28, 28, 1), latent_dim=20))
    for row in rows:
        if row["model"] == "mlp":
            row.update(flops_per_example=flops, achieved_gflops=row["examples_per_s"] * flops / 1e9,
                       fraction_of_matmul=row["examples_per_s"] * flops / peak)
    best = max(row["examples_per_s"] for row in rows)
    pipeline = pipeline_throughput(dataset, num_examples)
    rows.append({"model": "input pipeline", "examples_per_s": pipeline, "x_fastest_training": pipeline / best})
    rows.append({"model": "matmul 2048^2", "achieved_gflops": peak / 1e9})
    report("training_throughput", rows)


if __name__ == "__main__":
    main()
