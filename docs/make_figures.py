"""The guides' figures, drawn by tfvae itself from real data.

Small models train for a few epochs on Fashion-MNIST (Debian's `dataset-fashion-mnist`, read offline),
and `tfvae.images` and `tfvae.plots` picture them, as `tfvae train` and `tfvae explore` do:

    python docs/make_figures.py                # writes docs/figures/*.png (a few minutes on 2 CPU cores)
    python docs/make_figures.py --epochs 1     # a quick check of the script
    python docs/make_figures.py --only labels  # one group of figures: exploring, missing, gradients, labels

Every PNG is kept small for the repository: a figure larger than `MAX_BYTES` is stored with a palette.
"""

import argparse
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FIGURES = pathlib.Path(__file__).resolve().parent / "figures"
MAX_BYTES = 120_000
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def shrink(path):
    """Stores `path` with an adaptive palette of 64, 32 or 16 colours, the most that fits in `MAX_BYTES`, when it is
    larger (figures have few colours; the grey decoder means of a manifold need the fewest)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
    for colors in (64, 32, 16):
        if path.stat().st_size <= MAX_BYTES:
            break
        image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def enlarge(path, factor=2):
    """Scales an image grid up by a whole `factor`, each pixel a block, so 28-pixel images read on a page."""
    from PIL import Image

    with Image.open(path) as image:
        image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST).save(path, optimize=True)
    return path


def written(path):
    print(f"  {path.relative_to(FIGURES.parent.parent)}  {path.stat().st_size / 1000:.0f} kB", flush=True)


def save_figure(figure, name):
    from tfvae import plots

    written(shrink(plots.save(figure, FIGURES / f"{name}.png", name)))


def save_grid(array, name):
    from tfvae import images

    written(shrink(enlarge(images.save_png(array, FIGURES / f"{name}.png", name))))


def trained(model, data, epochs, validation=None, log=None):
    """`model`, compiled with the defaults and fitted for `epochs` (metrics per epoch in `log`, a CSV)."""
    import keras

    started = time.time()
    model.compile()
    callbacks = [keras.callbacks.CSVLogger(str(log))] if log else []
    model.fit(data, epochs=epochs, validation_data=validation, callbacks=callbacks, verbose=0)
    print(f"trained {type(model).__name__} for {epochs} epochs in {time.time() - started:.0f} s", flush=True)
    return model


def exploring(data, epochs, workdir):
    """A 2-d model for the plane, a 20-d one for samples, reconstructions, the KL per unit and completions."""
    import tfvae
    from tfvae import images, masks, plots

    x_test, y_test = data["x_test"], data["y_test"]
    flat = trained(tfvae.VAE.for_images((28, 28, 1), latent_dim=2, seed=0), data["train"], epochs)
    save_figure(plots.manifold(flat, x_test[:5000], y_test[:5000], size=16), "manifold")
    save_figure(plots.latent_space(flat, x_test[:5000], y_test[:5000], CLASS_NAMES), "latent_space")

    vae = trained(tfvae.VAE.for_images((28, 28, 1), latent_dim=20, seed=0), data["train"], epochs, data["held_out"],
                  workdir / "metrics.csv")
    save_grid(images.sample_grid(vae, n=64, seed=0), "samples")
    save_grid(images.reconstruction_grid(vae, x_test[:16]), "reconstructions")
    save_figure(plots.interpolations(vae, x_test[:16], pairs=6, steps=10), "interpolations")
    save_figure(plots.kl_per_dimension(vae, x_test), "kl_per_dimension")
    save_figure(plots.training_curves(workdir / "metrics.csv"), "training_curves")

    # The top half hidden: the mean completion and three drawn ones.
    observed = masks.make("top_half", (28, 28, 1))
    shown = x_test[:6]
    completed = vae.complete(shown, observed, method="metropolis_within_gibbs", num_samples=1000, seed=0).numpy()
    drawn = vae.complete(shown, observed, method="metropolis_within_gibbs", num_samples=1000, draws=3, seed=0).numpy()
    written(shrink(enlarge(images.save_completions(FIGURES / "completions.png", shown, observed, completed,
                                                            drawn))))


def missing(data, epochs, workdir):
    """A model trained with half of every training image's pixels missing, completing held-out images."""
    import tfvae
    from tfvae import images, masks
    from tfvae.data import load_dataset

    holes = load_dataset("fashion_mnist", split="train", batch_size=128, missing="random:0.5", download=False)
    incomplete = trained(tfvae.VAE.for_images((28, 28, 1), latent_dim=20, missing_data=True, seed=0), holes, epochs)
    observed = masks.make("random:0.5", (28, 28, 1), seed=0)
    shown = data["x_test"][:6]
    completed = incomplete.complete(shown, observed, seed=0).numpy()
    written(shrink(enlarge(images.save_completions(FIGURES / "completions_missing.png", shown, observed,
                                                            completed))))


def gradients(data, epochs, workdir):
    """The gradient variance of the four estimators on an IWAE (K = 5) model, trained half the epochs."""
    import tfvae
    from tfvae import plots
    from tfvae.diagnostics import gradient_variance

    iwae = trained(tfvae.VAE.for_images((28, 28, 1), latent_dim=20, objective="iwae", num_samples=5, seed=0),
                   data["train"], max(1, epochs // 2))
    results = gradient_variance(iwae, data["x_test"][:32], ("reparameterization", "score_function",
                                                            "doubly_reparameterized", "vimco"), num_draws=100, seed=0)
    for estimator, row in results.items():
        print(f"  {estimator:24} encoder variance {row['encoder_variance']:.4g}  decoder variance "
              f"{row['decoder_variance']:.4g}")
    save_figure(plots.gradient_variance_chart(results, "Gradient variance, iwae with K=5 (Fashion-MNIST, 32 images)"),
                "gradient_variance")


def labels(data, epochs, workdir):
    """A conditional model's samples, one row per class."""
    import tfvae
    from tfvae import images

    cvae = trained(tfvae.ConditionalVAE.for_images((28, 28, 1), num_classes=10, seed=0), data["labeled"], epochs)
    save_grid(images.sample_grid(cvae, n=100, seed=0), "conditional_samples")


GROUPS = {"exploring": exploring, "missing": missing, "gradients": gradients, "labels": labels}


def main(epochs, workdir, groups=tuple(GROUPS)):
    import keras

    from tfvae.data import load_dataset
    from tfvae.evaluation import collect

    FIGURES.mkdir(parents=True, exist_ok=True)
    x_test, y_test = collect(load_dataset("fashion_mnist", split="test", with_labels=True, binarize="static",
                                          shuffle=False, download=False))
    data = {
        "train": load_dataset("fashion_mnist", split="train", batch_size=128, download=False),
        "labeled": load_dataset("fashion_mnist", split="train", batch_size=128, with_labels=True, download=False),
        "held_out": load_dataset("fashion_mnist", split="test", binarize="static", shuffle=False, download=False),
        "x_test": x_test,
        "y_test": y_test,
    }
    for group in groups:
        keras.utils.set_random_seed(0)  # each group's figures the same whichever others run
        GROUPS[group](data, epochs, workdir)
    total = sum(path.stat().st_size for path in FIGURES.glob("*.png"))
    print(f"{len(list(FIGURES.glob('*.png')))} figures, {total / 1000:.0f} kB in {FIGURES}")


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each model (the IWAE model trains half)")
    parser.add_argument("--only", nargs="+", choices=list(GROUPS), default=list(GROUPS), help="these groups of figures")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        main(arguments.epochs, pathlib.Path(workdir), arguments.only)
