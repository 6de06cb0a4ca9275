"""Data completion on Fashion-MNIST: per model, mask and method, the thresholded completion's pixel accuracy
beside the training set's per-pixel means, the wall time per 1000 images, and per mask the model's
conditional NLL of the missing pixels beside the per-pixel means' (the conv model on a tenth of the images).
"mlp-missing" is the MLP trained on incomplete data (each training pixel hidden with probability 0.5),
completing the same complete held-out images, beside the MLP trained on complete data.

    python -m benchmarks.completion [--quick] [--epochs 10] [--images 1000] [--num-samples 1000] [--models mlp,mlp-missing]
"""

import argparse
import time

import numpy as np

from benchmarks.common import report

MASKS = ("top_half", "random:0.5", "center")

# Model name -> (architecture, pixels hidden in the training data).
MODELS = {"mlp": ("mlp", None), "conv": ("conv", None), "mlp-missing": ("mlp", "random:0.5")}


def accuracy(means, images, missing):
    """The share of missing pixels that `means` > 0.5 gets right."""
    return float(np.sum(((means > 0.5) == (images > 0.5)) * missing) / np.sum(missing))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 epoch on 10k examples, MLP only, 100 images, 100 samples")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    args = parser.parse_args()
    models = args.models.split(",")
    if not set(models) <= set(MODELS):
        parser.error(f"--models takes {', '.join(MODELS)}; received {args.models!r}")

    import keras

    import tfvae
    from tfvae import masks
    from tfvae.data import load_dataset
    from tfvae.evaluation import collect
    from tfvae.names import COMPLETION_METHODS

    split, epochs, count, samples = (
        ("train[:10000]", 1, 100, 100) if args.quick else ("train", args.epochs, args.images, args.num_samples)
    )
    if args.quick:
        models = [name for name in models if name != "conv"]
    pixel_means = collect(load_dataset("fashion_mnist", split=split, binarize="static", shuffle=False,
                                       download=False))[0].mean(axis=0)
    test = collect(load_dataset("fashion_mnist", split="test", binarize="static", shuffle=False, download=False), count)[0]
    rows = []
    for model in models:
        architecture, missing = MODELS[model]
        train = load_dataset("fashion_mnist", split=split, batch_size=128, download=False, missing=missing)
        keras.utils.set_random_seed(0)
        vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, architecture=architecture, missing_data=missing is not None,
                                   seed=0)
        vae.compile()
        vae.fit(train, epochs=epochs, verbose=0)
        images = test if architecture == "mlp" else test[: max(100, count // 10)]  # conv passes cost ~70x the MLP's
        for mask in MASKS:
            observed = masks.make(mask, (28, 28, 1), seed=0)
            missing = np.broadcast_to(~observed, images.shape)
            baseline = np.clip(np.broadcast_to(pixel_means, images.shape), 1e-6, 1 - 1e-6)
            baseline_nll = -np.mean(np.sum(np.where(images > 0.5, np.log(baseline), np.log1p(-baseline)) * missing, (1, 2, 3)))
            conditional_nll = -float(np.mean(vae.completion_log_likelihood(images, observed, num_samples=samples, seed=0)))
            for method in COMPLETION_METHODS:
                vae.complete(images[:100], observed, method=method, num_samples=samples, seed=0)  # compiles
                start = time.perf_counter()
                completed = vae.complete(images, observed, method=method, num_samples=samples, seed=0).numpy()
                seconds = time.perf_counter() - start
                rows.append({
                    "model": model, "mask": mask, "method": method, "num_samples": samples, "images": len(images),
                    "accuracy": accuracy(completed, images, missing), "baseline_accuracy": accuracy(baseline, images, missing),
                    "conditional_nll": conditional_nll, "baseline_nll": float(baseline_nll),
                    "s_per_1000_images": seconds * 1000 / len(images),
                })
                print(rows[-1], flush=True)
    report("completion", rows)


if __name__ == "__main__":
    main()
