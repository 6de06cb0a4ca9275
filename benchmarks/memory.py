"""Peak resident memory of a training run, and resident memory at the end of every epoch
(no growth from epoch to epoch is the target). MLP, Fashion-MNIST, batch 128.

    python -m benchmarks.memory [--quick]
"""

import argparse
import os
import resource

from benchmarks.common import report

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20k examples, 4 epochs")
    args = parser.parse_args()

    import keras

    import tfvae
    from tfvae.data import load_dataset

    split, epochs = ("train[:20000]", 4) if args.quick else ("train", 10)
    dataset = load_dataset("fashion_mnist", split=split, batch_size=128, download=False, drop_remainder=True)
    held_out = load_dataset("fashion_mnist", split="test", binarize="static", shuffle=False, download=False)
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, seed=0)
    vae.compile(steps_per_execution=16)
    per_epoch = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: per_epoch.append(resident_mib()))
    vae.fit(dataset, validation_data=held_out, epochs=epochs, callbacks=[record], verbose=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [{"epoch": i + 1, "rss_mib": rss} for i, rss in enumerate(per_epoch)]
    # Growth after the first epoch (which allocates caches and compiles) is the leak signal.
    rows.append({"epoch": "peak", "rss_mib": peak, "growth_after_epoch_1_mib": per_epoch[-1] - per_epoch[0],
                 "growth_per_epoch_mib": (per_epoch[-1] - per_epoch[1]) / max(1, len(per_epoch) - 2)})
    report("memory", rows)


if __name__ == "__main__":
    main()
