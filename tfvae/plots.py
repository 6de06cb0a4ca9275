"""Figures of trained models, drawn with matplotlib's headless Agg backend; each function returns the figure.

matplotlib is imported inside the functions, so importing tfvae (and `tfvae --help`) stays fast.
"""

import os
import pathlib


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path):
    """Writes `figure` as a PNG, aside and renamed into place; returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
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
