"""Every model kind, prior and posterior the command line builds, across fresh processes (run by test_registry.py).

  python every_part.py build DIR MNIST_DIR   builds each kind as `tfvae train` does, trains one step, saves
                                             DIR/NAME.keras, exports DIR/NAME/1 and records reference outputs;
  python every_part.py load DIR MNIST_DIR    in a new process: `keras.models.load_model` after `import
                                             tfvae.models`, and `tfvae.load_model`, then evaluate and complete;
  python every_part.py serve DIR             in a process that cannot import tfvae or TFP: every signature.
"""

import json
import os
import pathlib
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KINDS = ("vae", "conditional", "m2")
PRIORS_OF_LABELS = ("class_conditional", "class_conditional_vamp")  # p(z|y): for models of labels only


def combinations():
    """(name, settings) of every kind with every prior `tfvae train` can build, the posteriors taken in turn so
    that every kind also meets every posterior (as in a Latin square), then M1+M2 and the Helmholtz machines
    (Gaussian, with a VampPrior on top, binary)."""
    from tfvae import registry

    posteriors = list(registry.POSTERIORS)
    for turn, kind in enumerate(KINDS):
        priors = [prior for prior in registry.PRIORS if kind != "vae" or prior not in PRIORS_OF_LABELS]
        for index, prior in enumerate(priors):
            posterior = posteriors[(turn + index) % len(posteriors)]
            yield f"{kind}-{prior}-{posterior}", {"model": kind, "prior": prior, "posterior": posterior, "latent_dim": 4}
    yield "semi-supervised", {"model": "semi-supervised", "latent_dim": 4}  # M1+M2, on the codes of a VAE
    layers = {"model": "hierarchical", "latent_dims": (4, 2)}
    yield "hierarchical", layers
    yield "hierarchical-vamp", {**layers, "prior": "vamp"}
    yield "hierarchical-bernoulli", {**layers, "latent_type": "bernoulli", "objective": "reweighted_wake_sleep",
                                     "num_samples": 3}


def _data(mnist_dir):
    from tfvae.data.idx import read_idx

    images = read_idx(pathlib.Path(mnist_dir) / "t10k-images-idx3-ubyte.gz")[:64, ..., None].astype(np.float32) / 255
    labels = read_idx(pathlib.Path(mnist_dir) / "t10k-labels-idx1-ubyte.gz")[:64].astype(np.int64)
    return (np.random.default_rng(0).random(images.shape) < images).astype(np.float32), labels


def _training_labels(kind, labels):
    """What `fit` takes besides images: nothing, every label, or a quarter of them (-1 = unknown)."""
    if kind == "vae":
        return None
    return labels if kind == "conditional" else np.where(np.arange(len(labels)) % 4 == 0, labels, -1)


def _build(settings, images, labels):
    """The compiled model `tfvae train` builds for these settings (M1+M2: on a VAE's codes), trained one step."""
    import tfvae
    from tfvae.config import RunConfig
    from tfvae.data import DatasetInfo
    from tfvae.training import build_model

    given = _training_labels(settings["model"], labels)
    config = RunConfig.for_model(batch_size=32, steps_per_execution=1, **settings)
    labeled = len(images) if given is None else int(np.sum(given >= 0))
    info = DatasetInfo("mnist", "test[:64]", (28, 28, 1), len(images), "test", 10, labeled)
    trained = {"m1": tfvae.VAE.for_images((28, 28, 1), latent_dim=4, seed=0)} if settings["model"] == "semi-supervised" else {}
    model = build_model(config, info, **trained)
    model.fit(images[:32], None if given is None else given[:32], batch_size=32, epochs=1, verbose=0)
    return model


def _parts(vae):
    """The class names of a model's prior (and the prior on its top layer) and posterior head."""
    top = getattr(vae.prior, "top_prior", None)
    posterior = getattr(vae.encoder, "posterior", vae.encoder)  # a hierarchy's encoder is its own posterior
    return [type(vae.prior).__name__, type(top).__name__, type(posterior).__name__]


def build(directory, mnist_dir):
    from tfvae.export import export_saved_model

    images, labels = _data(mnist_dir)
    directory = pathlib.Path(directory)
    reference = {}
    for name, settings in combinations():
        model = _build(settings, images, labels)
        model.save(directory / f"{name}.keras")
        export_saved_model(model, directory / name, version=1)
        vae = model.image_model()
        reference[name] = {
            "kind": settings["model"],
            "elbo": vae.elbo(images[:8], seed=3, labels=vae.labels_used(labels[:8])).numpy().tolist(),
            "num_classes": int(vae.num_classes),
            "latent_dim": int(vae.latent_dim),
            "parts": _parts(vae),
        }
    (directory / "reference.json").write_text(json.dumps(reference))


def load(directory, mnist_dir):
    import keras

    import tfvae.models  # defining the models registers them with Keras

    directory = pathlib.Path(directory)
    reference = json.loads((directory / "reference.json").read_text())
    images, labels = _data(mnist_dir)
    plain = {name: keras.models.load_model(directory / f"{name}.keras") for name in reference}  # Keras alone, first

    import tfvae
    from tfvae import evaluation, masks

    checked = {}
    for name, expected in reference.items():
        model = tfvae.load_model(directory / f"{name}.keras")
        assert type(plain[name]) is type(model), (type(plain[name]), type(model))
        vae = model.image_model()
        assert _parts(vae) == expected["parts"], (name, _parts(vae), expected["parts"])
        given = vae.labels_used(labels[:8])
        elbo = vae.elbo(images[:8], seed=3, labels=given).numpy()
        assert np.allclose(elbo, expected["elbo"], rtol=1e-4, atol=1e-3), (name, elbo, expected["elbo"])
        assert np.allclose(plain[name].image_model().elbo(images[:8], seed=3, labels=given).numpy(), elbo, rtol=1e-4, atol=1e-3)
        metrics = evaluation.evaluate(vae, images[:16], log_likelihood_samples=10, labels=labels[:16])
        reported = model.evaluate(images[:16], _training_labels(expected["kind"], labels[:16]), verbose=0, return_dict=True)
        completed = vae.complete(images[:4], masks.make("top_half", (28, 28, 1)), num_samples=10,
                                 labels=None if given is None else given[:4]).numpy()
        assert np.isfinite(completed).all() and np.isfinite([metrics["log_likelihood"], reported["loss"]]).all(), name
        given = _training_labels(expected["kind"], labels[:32])
        history = model.fit(images[:32], given, batch_size=32, epochs=2, initial_epoch=1, verbose=0).history  # resumes
        assert np.isfinite(history["loss"]).all(), name
        checked[name] = metrics["elbo"]
    print(json.dumps(checked))


def serve(directory):
    import importlib.abc

    class Forbid(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("tfvae", "tensorflow_probability"):
                raise ImportError(f"{name} must not be needed to serve the model")

    sys.meta_path.insert(0, Forbid())
    import tensorflow as tf

    directory = pathlib.Path(directory)
    reference = json.loads((directory / "reference.json").read_text())
    images = tf.constant(np.random.default_rng(1).random((3, 28, 28, 1)) < 0.5, tf.float32)
    observed = tf.constant(np.arange(28 * 28).reshape(1, 28, 28, 1).repeat(3, 0) < 392, tf.float32)
    ran = {}
    for name in reference:
        saved = tf.saved_model.load(str(directory / name / "1"))
        labels = {"labels": tf.constant([1, 2, 3])} if reference[name]["num_classes"] else {}
        count = {} if labels else {"count": tf.constant(3)}
        calls = {
            "reconstruct": dict(images=images, **labels), "encode": dict(images=images, **labels),
            "decode": dict(z=tf.zeros((3, reference[name]["latent_dim"])), **labels), "elbo": dict(images=images, **labels),
            "sample": dict(seed=tf.constant(1), **labels, **count),
            "complete": dict(images=images, observed=observed, seed=tf.constant(2), **labels),
        }
        if "classify" in saved.signatures:
            calls["classify"] = {"images": images}
        for signature, kwargs in calls.items():
            for key, value in saved.signatures[signature](**kwargs).items():
                assert np.isfinite(value.numpy()).all(), (name, signature, key)
        ran[name] = sorted(calls)
    print(json.dumps(ran))


if __name__ == "__main__":
    {"build": build, "load": load, "serve": serve}[sys.argv[1]](*sys.argv[2:])
