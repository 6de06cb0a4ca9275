"""Training objectives side by side on Fashion-MNIST: held-out NLL (importance sampling, k = 5000) and
−ELBO after the same epochs for ELBO (K=1), ELBO (K=5), IWAE K=5, IWAE K=50 and IWAE K=50 with DReG,
each one's cost per epoch relative to K=1, and the gradient-variance table (every estimator) with the
IWAE/DReG encoder SNR at K = 1, 10, 100 on the trained models.

    python -m benchmarks.objectives [--quick] [--epochs 10] [--k 5000]
"""

import argparse
import time

import numpy as np

from benchmarks.common import report

CONFIGS = [  # (name, VAE options)
    ("elbo K=1", {"objective": "elbo", "num_samples": 1}),
    ("elbo K=5", {"objective": "elbo", "num_samples": 5}),
    ("iwae K=5", {"objective": "iwae", "num_samples": 5}),
    ("iwae K=50", {"objective": "iwae", "num_samples": 50}),
    ("iwae K=50 dreg", {"objective": "iwae", "num_samples": 50, "gradient_estimator": "doubly_reparameterized"}),
]
NLL_EXAMPLES = 2000
GRADIENT_BATCH = 32


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 epoch on 10k examples, k = 200 on 200 images, 10 draws")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--k", type=int, default=5000)
    args = parser.parse_args()

    import keras

    import tfvae
    from tfvae.data import load_dataset
    from tfvae.diagnostics import gradient_variance
    from tfvae.evaluation import collect
    from tfvae.names import GRADIENT_ESTIMATORS

    split, epochs, k, nll_examples, draws = (
        ("train[:10000]", 1, 200, 200, 10) if args.quick else ("train", args.epochs, args.k, NLL_EXAMPLES, 100)
    )
    train = load_dataset("fashion_mnist", split=split, batch_size=100, download=False, drop_remainder=True)
    test = collect(load_dataset("fashion_mnist", split="test", binarize="static", shuffle=False, download=False))[0]
    class EpochTimes(keras.callbacks.Callback):
        """Wall-clock seconds of each epoch."""

        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    rows, variance_rows, models = [], [], {}
    for name, options in CONFIGS:
        keras.utils.set_random_seed(0)
        vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, seed=0, **options)
        vae.compile()
        timer = EpochTimes()
        vae.fit(train, epochs=epochs, verbose=0, callbacks=[timer])
        seconds = timer.seconds
        models[name] = vae
        images = test[:nll_examples]
        rows.append({
            "objective": name, "epochs": epochs,
            "nll": -float(np.mean(vae.log_likelihood(images, num_samples=k, seed=0))), "k": k, "nll_images": len(images),
            "neg_elbo": -float(np.mean(vae.elbo(test, seed=0))),
            "s_per_epoch": float(np.median(seconds[1:] if len(seconds) > 1 else seconds)),
        })
        print(rows[-1], flush=True)
    for row in rows:
        row["cost_vs_k1"] = row["s_per_epoch"] / rows[0]["s_per_epoch"]
        row["nll_gain_vs_k1"] = rows[0]["nll"] - row["nll"]
    report("objectives", rows)

    batch = test[:GRADIENT_BATCH]
    table = gradient_variance(models["iwae K=5"], batch, GRADIENT_ESTIMATORS, num_draws=draws, seed=0)
    for estimator, values in table.items():
        variance_rows.append({"model": "iwae K=5", "objective": "iwae K=5", "estimator": estimator, **values})
    for model in ("elbo K=1", "iwae K=50 dreg"):
        for samples in (1, 10, 100):
            result = gradient_variance(models[model], batch[:16], ("reparameterization", "doubly_reparameterized"),
                                       num_draws=draws, seed=1, objective="iwae", num_samples=samples)
            for estimator, values in result.items():
                variance_rows.append({"model": model, "objective": f"iwae K={samples}", "estimator": estimator, **values})
    report("gradient_variance", variance_rows)


if __name__ == "__main__":
    main()
