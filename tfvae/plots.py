"""Figures of trained models, drawn with matplotlib's headless Agg backend; each function returns the figure.

matplotlib is imported inside the functions, so importing tfvae (and `tfvae --help`) stays fast.
"""

import os
import pathlib

import numpy as np

# Draws of the prior behind the manifold's quantiles: the 5% quantile of N(0, 1) within 0.01.
PRIOR_DRAWS = 100_000


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path, picture):
    """Writes `figure` as a PNG marked as the tfvae `picture` it is, aside and renamed into place; returns the path."""
    from tfvae.run_directory import PICTURE_KEY

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight", metadata={PICTURE_KEY: picture})
    os.replace(tmp, path)
    _pyplot().close(figure)
    return path


def gradient_variance_chart(results, title="Gradient variance of each estimator"):
    """Bar chart (log scale) of encoder and decoder gradient variance per estimator, from `tfvae.diagnostics`."""
    plt = _pyplot()
    estimators = list(results)
    figure, axes = plt.subplots(figsize=(1.6 * len(estimators) + 3, 4.5))
    width = 0.38
    for offset, network in ((-width / 2, "encoder"), (width / 2, "decoder")):
        axes.bar([i + offset for i in range(len(estimators))], [results[e][f"{network}_variance"] for e in estimators],
                 width, label=network)
    axes.set_yscale("log")
    axes.set_xticks(range(len(estimators)), [e.replace("_", " ") for e in estimators])
    axes.set_ylabel("summed per-parameter variance of the minibatch gradient")
    axes.set_title(title)
    axes.legend()
    return figure


# Pictures of a trained model (`explore` writes them all) -------------------------------------

CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "mnist": tuple(str(d) for d in range(10)),
}


def _tiles(images, rows, columns):
    """(rows * columns, H, W, C) images in [0, 1] as one (rows*H, columns*W) grey or RGB array."""
    from tfvae.images import grid

    picture = grid(images, columns=columns)
    return picture[..., 0] if picture.shape[-1] == 1 else picture


def _codes(vae, images, labels):
    from tfvae.evaluation import latent_summary

    return latent_summary(vae, images, labels, kl=False)[0]


def leading_plane(codes):
    """(centre, 2 x latent_dim orthonormal basis): the identity plane for 2-d latents, else the two leading
    principal directions of the posterior point codes `codes`."""
    latent_dim = codes.shape[1]
    if latent_dim == 1:
        return np.zeros(1), np.eye(1)
    if latent_dim == 2:
        return np.zeros(2), np.eye(2)
    centre = codes.mean(axis=0)
    _, _, directions = np.linalg.svd(codes - centre, full_matrices=False)
    return centre, directions[:2]


def _plane_note(latent_dim):
    return "" if latent_dim <= 2 else f" (the 2 leading principal directions of {latent_dim})"


def latent_space(vae, images, labels=None, class_names=None, colour_by=None):
    """Posterior means of `images`, coloured by `labels` (or by `colour_by`, e.g. predicted classes)."""
    plt = _pyplot()
    codes = _codes(vae, images, labels)
    centre, basis = leading_plane(codes)
    points = (codes - centre) @ basis.T
    colours = labels if colour_by is None else colour_by
    figure, axes = plt.subplots(figsize=(7.5, 6))
    if points.shape[1] == 1:
        points = np.concatenate([points, np.zeros_like(points)], axis=1)
    if colours is None:
        axes.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, color="tab:blue")
        title = "Posterior codes of held-out images (no labels: one colour)"
    else:
        scatter = axes.scatter(points[:, 0], points[:, 1], c=colours, s=4, alpha=0.7, cmap="tab10",
                               vmin=-0.5, vmax=9.5 if int(np.max(colours)) < 10 else None)
        classes = np.unique(colours)
        names = [class_names[c] if class_names is not None and c < len(class_names) else str(c) for c in classes]
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=scatter.cmap(scatter.norm(c))) for c in classes]
        axes.legend(handles, names, fontsize=8, loc="best", markerscale=1.2)
        title = "Posterior codes of held-out images, coloured by " + ("class" if colour_by is None else "predicted class")
    axes.set_title(title + _plane_note(vae.latent_dim), fontsize=10)
    axes.set_xlabel("z₁" if vae.latent_dim <= 2 else "first principal direction")
    axes.set_ylabel("z₂" if vae.latent_dim <= 2 else "second principal direction")
    return figure


def manifold_grid(vae, centre, basis, size=20, low=0.05, high=0.95, seed=0, label=None):
    """(size, axes) coordinates along each direction of the plane (centre, basis) at the model's own prior's
    quantiles from `low` to `high`, from `PRIOR_DRAWS` fixed-seed draws of p(z) (p(z|y = label) for a prior
    of labels) projected on it (Kingma & Welling's figure 4 takes N(0, 1)'s quantiles, which these are for
    the standard normal prior)."""
    import tensorflow as tf

    from tfvae.distributions import draw

    labels = vae.labels_used(tf.fill([PRIOR_DRAWS], label or 0))
    draws = draw(vae.prior_distribution(labels), PRIOR_DRAWS, tf.constant([seed, 0], tf.int32)).numpy()
    return np.quantile((draws - centre) @ basis.T, np.linspace(low, high, size), axis=0)


def manifold(vae, images, labels=None, size=20, label=None):
    """Decoder means over a grid of the latent plane at the prior's quantiles; a model of labels takes `label`."""
    plt = _pyplot()
    centre, basis = leading_plane(_codes(vae, images, labels))
    values = manifold_grid(vae, centre, basis, size, label=label)  # (size, 1 or 2)
    if vae.latent_dim == 1:
        codes = centre + values
        rows, columns = 1, size
        row_values = values[:1, 0]
    else:
        first, second = np.meshgrid(values[:, 0], values[::-1, 1])  # second coordinate grows upwards
        codes = centre + np.stack([first.ravel(), second.ravel()], axis=1) @ basis
        rows, columns = size, size
        row_values = values[:, 1]
    decoded = vae.decode(codes.astype(np.float32), vae.labels_used(np.full(len(codes), label or 0))).mean().numpy()
    figure, axes = plt.subplots(figsize=(8, 8 * rows / columns + 0.6))
    axes.imshow(_tiles(decoded, rows, columns), cmap="gray", extent=(0, columns, 0, rows))
    axes.set_xticks(np.arange(columns) + 0.5, [f"{v:.1f}" for v in values[:, 0]], fontsize=6)
    axes.set_yticks(np.arange(rows) + 0.5, [f"{v:.1f}" for v in row_values], fontsize=6)
    axes.set_xlabel("first coordinate (the prior's quantiles 0.05 … 0.95)")
    axes.set_ylabel("second coordinate")
    class_note = f", class {label or 0}" if vae.num_classes else ""
    axes.set_title(f"Learned manifold: decoder means over the latent plane{_plane_note(vae.latent_dim)}{class_note}",
                   fontsize=10)
    return figure


def slerp(start, end, steps):
    """Spherical interpolation between latent codes (rows of `start` and `end`), `steps` points each: (N, steps, d)."""
    fractions = np.linspace(0.0, 1.0, steps)[None, :, None]
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    angle = np.arccos(np.clip(np.sum(unit(start) * unit(end), axis=-1), -1.0, 1.0))[:, None, None]
    small = angle < 1e-4
    sine = np.where(small, 1.0, np.sin(angle))
    spherical = (np.sin((1 - fractions) * angle) * start[:, None] + np.sin(fractions * angle) * end[:, None]) / sine
    linear = (1 - fractions) * start[:, None] + fractions * end[:, None]
    return np.where(small, linear, spherical)


def interpolations(vae, images, labels=None, pairs=8, steps=10):
    """Rows of decoder means along spherical paths between the posterior means of pairs of images."""
    plt = _pyplot()
    count = min(pairs, len(images) // 2)
    codes = _codes(vae, images[: 2 * count], None if labels is None else labels[: 2 * count])
    path = slerp(codes[:count], codes[count : 2 * count], steps).reshape(-1, vae.latent_dim)
    path_labels = None if labels is None else vae.labels_used(np.repeat(labels[:count], steps))
    decoded = vae.decode(path.astype(np.float32), path_labels).mean().numpy()
    figure, axes = plt.subplots(figsize=(steps * 0.8, count * 0.8 + 0.6))
    axes.imshow(_tiles(decoded, count, steps), cmap="gray")
    axes.set_axis_off()
    axes.set_title("Spherical interpolation between the posterior codes of image pairs (left → right)", fontsize=10)
    return figure


def kl_per_dimension(vae, images, labels=None, threshold=None):
    """The held-out KL(q(z_d|x) || p(z_d)) of each latent dimension, largest first, with the active-unit threshold."""
    from tfvae import evaluation

    plt = _pyplot()
    images, labels = images[:2000], None if labels is None else labels[:2000]
    statistics = evaluation.latent_statistics(vae, images, labels)
    kl, activity = statistics["kl"], statistics["activity"]
    order = np.argsort(kl)[::-1]
    threshold = evaluation.ACTIVE_UNIT_THRESHOLD if threshold is None else threshold
    active = activity[order] > threshold
    figure, axes = plt.subplots(figsize=(max(6, 0.3 * vae.latent_dim + 2), 4.5))
    axes.bar(np.arange(len(kl)), kl[order], color=np.where(active, "tab:blue", "tab:gray"))
    axes.set_xticks(np.arange(len(kl)), [str(d) for d in order], fontsize=7)
    axes.set_xlabel(f"latent dimension (sorted by KL); grey: inactive, Var[code] ≤ {threshold:g}")
    axes.set_ylabel("KL per image (nats)")
    axes.set_title(f"KL per latent dimension: {int(active.sum())} of {vae.latent_dim} units active", fontsize=10)
    return figure


def training_curves(metrics_csv):
    """Training and validation loss, reconstruction and KL per epoch, from a run's `metrics.csv`."""
    import csv

    plt = _pyplot()
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{metrics_csv} holds no epochs yet.")
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure, all_axes = plt.subplots(1, 3, figsize=(13, 4))
    for axes, name in zip(all_axes, ("loss", "reconstruction", "kl")):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + name in rows[0]:
                axes.plot(epochs, [float(row[prefix + name]) for row in rows], style, marker="o", markersize=3,
                          label="validation" if prefix else "training")
        axes.set_xlabel("epoch")
        axes.set_ylabel(f"{name} (nats per image)")
        axes.set_title(name)
        axes.legend()
    figure.suptitle("Training curves")
    return figure


# The pictures `explore` writes, each as NAME.png.
PICTURES = ("latent_space", "manifold", "interpolations", "kl_per_dimension", "training_curves")


def explore(model, images, labels, out_dir, metrics_csv=None, class_names=None):
    """Writes latent_space, manifold, interpolations, kl_per_dimension (and training_curves) PNGs of the model of
    images (M1 for M1+M2; a classifier colours the latent space by its predictions); returns their paths."""
    if len(images) < 2:
        raise ValueError(f"Expected at least 2 images to picture (interpolations pair them). Received: {len(images)}")
    out_dir = pathlib.Path(out_dir)
    vae = model.image_model()
    colour_by = model.classify(images).mode().numpy() if hasattr(model, "classify") else None
    figures = {
        "latent_space": lambda: latent_space(vae, images, labels, class_names, colour_by),
        "manifold": lambda: manifold(vae, images, labels),
        "interpolations": lambda: interpolations(vae, images, labels),
        "kl_per_dimension": lambda: kl_per_dimension(vae, images, labels),
    }
    if metrics_csv is not None and pathlib.Path(metrics_csv).is_file():
        figures["training_curves"] = lambda: training_curves(metrics_csv)
    return [save(make(), out_dir / f"{name}.png", name) for name, make in figures.items()]
