"""SavedModel export: what TF Serving needs, checked in a process that has TensorFlow only."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import completion, masks
from tfvae.export import SERVING_COMPLETION_SAMPLES, SERVING_ELBO_SEED, export_saved_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory, binarized_mnist):
    train, held_out = binarized_mnist
    keras.utils.set_random_seed(0)
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=5, seed=0)
    vae.compile()
    vae.fit(train[:1000], batch_size=100, epochs=1, verbose=0)
    root = tmp_path_factory.mktemp("saved") / "mnist"
    path = export_saved_model(vae, root, run_config={"dataset": "mnist", "latent_dim": 5}, dataset="mnist")
    return vae, root, path, held_out[:7]


LOADER = textwrap.dedent(
    """
    import sys, importlib.abc
    class Forbid(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("tfvae", "tensorflow_probability"):
                raise ImportError(f"{name} must not be needed to serve the model")
    sys.meta_path.insert(0, Forbid())
    import numpy as np, tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    inputs = np.load(sys.argv[2])
    calls = {
        "serving_default": dict(images=inputs["images"]),
        "reconstruct": dict(images=inputs["images"]),
        "encode": dict(images=inputs["images"]),
        "decode": dict(z=inputs["z"]),
        "sample": dict(count=tf.constant(6), seed=tf.constant(11)),
        "elbo": dict(images=inputs["images"]),
        "complete": dict(images=inputs["holes"], observed=inputs["observed"], seed=tf.constant(3)),
    }
    out = {}
    for name, kwargs in calls.items():
        for key, value in model.signatures[name](**kwargs).items():
            assert value.dtype == tf.float32, (name, key, value.dtype)
            out[f"{name}/{key}"] = value.numpy()
    out["sample_again/images"] = model.signatures["sample"](count=tf.constant(6), seed=tf.constant(11))["images"].numpy()
    out["sample_other/images"] = model.signatures["sample"](count=tf.constant(6), seed=tf.constant(12))["images"].numpy()
    np.savez(sys.argv[3], **out)
    """
)


def test_fresh_tensorflow_only_process_serves_every_signature(exported, tmp_path):
    vae, _, path, images = exported
    z = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    observed = np.broadcast_to(masks.make("top_half", images.shape[1:]), images.shape).astype(np.float32)
    holes = np.where(observed > 0, images, np.nan).astype(np.float32)  # what is missing may be NaN
    np.savez(tmp_path / "in.npz", images=images, holes=holes, z=z, observed=observed)
    (tmp_path / "load.py").write_text(LOADER)
    subprocess.run([sys.executable, tmp_path / "load.py", path, tmp_path / "in.npz", tmp_path / "out.npz"], check=True)
    out = dict(np.load(tmp_path / "out.npz"))

    posterior, likelihood = vae.encode(images), vae.decode(z)
    terms = vae.objective_terms(images, tf.constant(SERVING_ELBO_SEED, tf.int32))
    expected = {
        "serving_default/reconstruction": vae.reconstruct(images),
        "reconstruct/reconstruction": vae.reconstruct(images),
        "encode/loc": posterior.mean(),
        "encode/scale": posterior.stddev(),
        "decode/mean": likelihood.mean(),
        "decode/logits": likelihood.distribution.logits,
        "sample/images": vae.sample(6, seed=11),
        "elbo/elbo": terms["elbo"],
        "elbo/reconstruction": terms["reconstruction"],
        "elbo/kl": terms["kl"],
        "complete/completion": completion.importance(
            tf.constant(images), tf.constant(observed), vae._posterior, vae._decoder_for(), vae.prior_distribution(), tf.constant([3, 0]),
            SERVING_COMPLETION_SAMPLES, vae._chunk_size(SERVING_COMPLETION_SAMPLES, 100))[0],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(out[key], np.asarray(value), rtol=1e-4, atol=1e-4, err_msg=key)
    np.testing.assert_array_equal(out["sample/images"], out["sample_again/images"])
    assert not np.allclose(out["sample/images"], out["sample_other/images"])


def test_saved_model_cli_show_and_run(exported, tmp_path):
    _, _, path, images = exported
    show = subprocess.run(["saved_model_cli", "show", "--dir", str(path), "--all"], capture_output=True, text=True, check=True)
    blocks = {block.split("'")[0]: block for block in show.stdout.split("signature_def['")[1:]}
    for name in ("serving_default", "reconstruct", "encode", "decode", "sample", "elbo"):
        # TF's own __saved_model_init_op is a NoOp; every served signature has dense outputs.
        assert "Method name is: tensorflow/serving/predict" in blocks[name]
        assert "DT_INVALID" not in blocks[name] and "DT_FLOAT" in blocks[name]
    assert "shape: (-1, 28, 28, 1)" in show.stdout
    np.save(tmp_path / "images.npy", images)
    run = subprocess.run(
        ["saved_model_cli", "run", "--dir", str(path), "--tag_set", "serve", "--signature_def", "encode",
         "--inputs", f"images={tmp_path / 'images.npy'}"],
        capture_output=True, text=True, check=True,
    )
    assert "Result for output key loc" in run.stdout and "Result for output key scale" in run.stdout


def test_assets_travel_with_the_model(exported):
    _, _, path, _ = exported
    record = json.loads((path / "assets.extra" / "tfvae.json").read_text())
    assert record["latent_dim"] == 5 and record["image_shape"] == [28, 28, 1] and record["dataset"] == "mnist"
    assert record["tfvae_version"] == tfvae.__version__
    assert json.loads((path / "assets.extra" / "run_config.json").read_text())["dataset"] == "mnist"


def test_wrong_inputs_are_rejected_by_the_signature(exported):
    _, _, path, _ = exported
    model = tf.saved_model.load(str(path))
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        model.signatures["encode"](images=tf.zeros((2, 32, 32, 1)))
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        model.signatures["encode"](images=tf.zeros((2, 28, 28, 1), tf.int32))
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        model.signatures["decode"](z=tf.zeros((2, 6)))


def test_versions_are_numbered_never_overwritten_and_written_atomically(exported, monkeypatch):
    vae, root, first, _ = exported
    second = export_saved_model(vae, root)
    assert (first.name, second.name) == ("1", "2")
    with pytest.raises(FileExistsError, match="never overwritten"):
        export_saved_model(vae, root, version=1)

    def interrupted(self, filepath, **kwargs):
        original(self, filepath, **kwargs)
        raise KeyboardInterrupt  # after the files are written, before the rename

    archive_class = type(keras.export.ExportArchive())  # __new__ picks the backend's subclass
    original = archive_class.write_out
    monkeypatch.setattr(archive_class, "write_out", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(vae, root)
    assert sorted(p.name for p in root.iterdir() if p.name != ".lock") == ["1", "2"]  # no temporary folder left
