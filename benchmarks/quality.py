"""Model quality after a fixed training budget: held-out negative log-likelihood (importance
sampling, k = 5000) and negative ELBO, in nats, on Fashion-MNIST test with a fixed binarization.
These are the baseline later work must beat.

    python -m benchmarks.quality [--quick] [--epochs 10] [--k 5000]
"""

import argparse
import time

import numpy as np

from benchmarks.common import report

# Importance sampling with k = 5000 costs k decoder passes per image: the conv decoder's are
# ~70x the MLP's FLOPs; both NLLs use the first test images, the conv model fewer of them.
NLL_EXAMPLES = {"mlp": 2000, "conv": 100}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 epochs on 20k examples, k = 500 on 200 images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--k", type=int, default=5000)
    args = parser.parse_args()

    import keras

    import tfvae
    from tfvae.data import load_dataset
    from tfvae.evaluation import active_units, collect

    split, epochs, k = ("train[:20000]", 2, 500) if args.quick else ("train", args.epochs, args.k)
    train = load_dataset("fashion_mnist", split=split, batch_size=128, download=False, drop_remainder=True)
    test = collect(load_dataset("fashion_mnist", split="test", binarize="static", shuffle=False, download=False))[0]
    rows = []
    for architecture in ("mlp", "conv"):
        keras.utils.set_random_seed(0)
        vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, architecture=architecture, seed=0)
        vae.compile(jit_compile=False, steps_per_execution=16)  # the faster setting on CPU (RESULTS.md)
        start = time.perf_counter()
        vae.fit(train, epochs=epochs, verbose=0)
        train_s = time.perf_counter() - start
        terms = vae.elbo_terms(test, seed=0)
        nll_images = test[: 200 if args.quick else NLL_EXAMPLES[architecture]]
        start = time.perf_counter()
        nll = -float(np.mean(vae.log_likelihood(nll_images, num_samples=k, seed=0)))
        rows.append({
            "model": architecture, "epochs": epochs, "neg_elbo": -float(np.mean(terms["elbo"])),
            "reconstruction": float(np.mean(terms["reconstruction"])), "kl": float(np.mean(terms["kl"])),
            "nll": nll, "k": k, "nll_images": len(nll_images),
            "neg_elbo_same_images": -float(np.mean(terms["elbo"][: len(nll_images)])),
            "active_units": active_units(vae, test), "train_s": train_s, "nll_s": time.perf_counter() - start,
        })
    report("quality", rows)


if __name__ == "__main__":
    main()
