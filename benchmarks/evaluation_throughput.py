"""Importance-sampled log p(x): (example, sample) pairs per second against this machine's matmul limit.

The held-out evaluation `tfvae train` ends with (K = 1000 on the test split) is one decoder
pass per (example, sample) pair; its matmul FLOPs per pair are the decoder's forward pass.
MLP 784-400-20, Bernoulli, Fashion-MNIST test images.

    python -m benchmarks.evaluation_throughput [--quick]
"""

import argparse
import time

from benchmarks.common import report
from benchmarks.training_throughput import matmul_flops_per_second


def decoder_flops_per_sample(vae):
    import keras

    return sum(2 * layer.kernel.shape[0] * layer.kernel.shape[1]
               for layer in vae.decoder._flatten_layers() if isinstance(layer, keras.layers.Dense))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 images instead of 1000")
    args = parser.parse_args()
    import numpy as np

    import tfvae
    from tfvae.data.idx import read_idx

    count = 200 if args.quick else 1000
    images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")[:count, ..., None] / 255.0
    images = (np.random.default_rng(0).random(images.shape) < images).astype(np.float32)
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20)
    flops = decoder_flops_per_sample(vae)
    limit = matmul_flops_per_second()
    rows = []
    for num_samples in (100, 1000):
        vae.log_likelihood(images[:100], num_samples=num_samples)  # compile
        start = time.perf_counter()
        vae.log_likelihood(images, num_samples=num_samples).numpy()
        seconds = time.perf_counter() - start
        pairs = count * num_samples / seconds
        rows.append({"K": num_samples, "images": count, "seconds": seconds, "pairs_per_s": pairs,
                     "matmul_limit_fraction": pairs * flops / limit, "10k_images_minutes": 10000 * num_samples / pairs / 60})
    report("evaluation_throughput", rows)


if __name__ == "__main__":
    main()
