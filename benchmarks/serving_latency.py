"""p50/p99 latency of the exported SavedModel's `encode` signature at batch 1 and 256.

    python -m benchmarks.serving_latency [--quick]
"""

import argparse
import functools
import tempfile

import numpy as np

from benchmarks.common import report, timed


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()

    import tensorflow as tf

    import tfvae
    from tfvae.export import export_saved_model

    repeats = 200 if args.quick else 2000
    rows = []
    for architecture in ("mlp", "conv"):
        vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, architecture=architecture)
        with tempfile.TemporaryDirectory() as root:
            encode = tf.saved_model.load(str(export_saved_model(vae, root))).signatures["encode"]
            for batch in (1, 256):
                images = tf.constant(np.random.default_rng(0).random((batch, 28, 28, 1), np.float32))
                call = functools.partial(encode, images=images)
                timed(call, 20)  # warm-up
                times = np.array(timed(call, repeats // (1 if batch == 1 else 4)))
                rows.append({
                    "architecture": architecture, "batch": batch,
                    "p50_ms": 1e3 * float(np.percentile(times, 50)), "p99_ms": 1e3 * float(np.percentile(times, 99)),
                    "examples_per_s": batch / float(np.median(times)),
                })
    report("serving_latency", rows)


if __name__ == "__main__":
    main()
