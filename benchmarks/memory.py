"""Peak resident memory of a training run, and resident memory at the end of every epoch
(no growth from epoch to epoch is the target). MLP, Fashion-MNIST, batch 128.

Each run is a fresh process, once with glibc's default allocator settings and once with the
arena cap that `tfvae train` applies (`tfvae.allocator.cap_malloc_arenas`): Keras starts a new
tf.data iterator (and new threads) every epoch, and glibc gives new threads new malloc arenas
(up to 8 per core), which reads as growth until every arena exists.

    python -m benchmarks.memory [--quick]
"""

import argparse
import json
import os
import resource
import subprocess
import sys

from benchmarks.common import report

PAGE = os.sysconf("SC_PAGE_SIZE")
ALLOCATORS = ("glibc default", "tfvae arena cap")


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def run(allocator, split, epochs):
    """Trains in this process; prints resident MiB after each epoch and the peak, as JSON."""
    import keras

    import tfvae
    from tfvae.allocator import cap_malloc_arenas

    if allocator == "tfvae arena cap" and not cap_malloc_arenas():
        raise SystemExit("The arena cap needs glibc and MALLOC_ARENA_MAX unset.")
    from tfvae.data import load_dataset

    dataset = load_dataset("fashion_mnist", split=split, batch_size=128, download=False, drop_remainder=True)
    held_out = load_dataset("fashion_mnist", split="test", binarize="static", shuffle=False, download=False)
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, seed=0)
    vae.compile(steps_per_execution=16)
    per_epoch = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: per_epoch.append(resident_mib()))
    vae.fit(dataset, validation_data=held_out, epochs=epochs, callbacks=[record], verbose=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"per_epoch": per_epoch, "peak": peak}))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20k examples, 4 epochs")
    parser.add_argument("--run", nargs=3, metavar=("ALLOCATOR", "SPLIT", "EPOCHS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return run(args.run[0], args.run[1], int(args.run[2]))

    split, epochs = ("train[:20000]", 4) if args.quick else ("train", 20)
    results = {}
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    for name in ALLOCATORS:
        child = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--run", name, split, str(epochs)],
                               env=env, capture_output=True, text=True, check=True)
        results[name] = json.loads(child.stdout.strip().splitlines()[-1])
    rows = [{"epoch": i + 1, **{name: r["per_epoch"][i] for name, r in results.items()}} for i in range(epochs)]
    rows.append({"epoch": "peak", **{name: r["peak"] for name, r in results.items()}})
    # Growth over the second half of the run, after caches, compilation and arenas have settled.
    half = epochs // 2
    rows.append({"epoch": f"MiB/epoch, epochs {half + 1}-{epochs}",
                 **{name: (r["per_epoch"][-1] - r["per_epoch"][half - 1]) / (epochs - half) for name, r in results.items()}})
    report("memory", rows)


if __name__ == "__main__":
    main()
