"""Training throughput (examples/s, steady state) against this machine's float32 matmul rate,
and what the input pipeline delivers alone. MLP 784-400-20 and conv, Bernoulli, batch 128,
dynamically binarized Fashion-MNIST (Debian's dataset-fashion-mnist).

    python -m benchmarks.training_throughput [--quick]
"""

import argparse
import time

from benchmarks.common import report


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
    """Multiply-adds of every Dense layer, x2 for FLOPs, x3 for forward + backward (input and weight grads)."""
    import keras

    total = 0
    for network in (vae.encoder, vae.decoder):
        for layer in network._flatten_layers():
            if isinstance(layer, keras.layers.Dense):
                total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return 3 * total


def steady_state_throughput(vae, dataset, num_examples, epochs):
    """Examples/s over whole fit() calls, after one epoch that compiles the step."""
    vae.fit(dataset, epochs=1, verbose=0)
    start = time.perf_counter()
    vae.fit(dataset, epochs=epochs, verbose=0)
    return epochs * num_examples / (time.perf_counter() - start)


def pipeline_throughput(dataset, num_examples, epochs=3):
    for _ in dataset:  # first pass fills the cache
        pass
    start = time.perf_counter()
    for _ in range(epochs):
        for _ in dataset:
            pass
    return epochs * num_examples / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20k examples, one timed epoch")
    args = parser.parse_args()

    import tfvae
    from tfvae.data import load_dataset

    split, epochs = ("train[:20000]", 1) if args.quick else ("train", 3)
    dataset, info = load_dataset("fashion_mnist", split=split, batch_size=128, download=False, drop_remainder=True, return_info=True)
    num_examples = (info.num_examples // 128) * 128
    peak = matmul_flops_per_second()
    rows = []
    for architecture, jit in (("mlp", True), ("mlp", False), ("conv", True), ("conv", False)):
        vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, architecture=architecture, seed=0)
        vae.compile(jit_compile=jit)
        throughput = steady_state_throughput(vae, dataset, num_examples, epochs)
        row = {"model": architecture, "jit": jit, "examples_per_s": throughput}
        if architecture == "mlp":
            flops = dense_training_flops_per_example(vae)
            row.update(flops_per_example=flops, achieved_gflops=throughput * flops / 1e9, fraction_of_matmul=throughput * flops / peak)
        rows.append(row)
    rows.append({"model": "input pipeline", "examples_per_s": pipeline_throughput(dataset, num_examples)})
    rows.append({"model": "matmul 2048^2", "achieved_gflops": peak / 1e9})
    report("training_throughput", rows)


if __name__ == "__main__":
    main()
