"""How models run: the one XLA rule, the fast default path for NumPy input, mixed precision, editable installs."""

import logging
import os
import pathlib
import subprocess
import sys
import sysconfig

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import strategies
from tfvae.precision import precision

REPO = pathlib.Path(__file__).resolve().parents[1]


def dense_and_conv():
    return (tfvae.VAE.for_images((8, 8, 1), latent_dim=2),
            tfvae.VAE.for_images((8, 8, 1), latent_dim=2, architecture="conv"))


def test_xla_rule_on_cpu(caplog):
    dense, conv = dense_and_conv()
    assert strategies.choose_jit_compile(dense)[0] is True
    assert strategies.choose_jit_compile(conv)[0] is False
    assert strategies.choose_jit_compile(conv, requested=True) == (True, "as requested")
    assert strategies.choose_jit_compile(dense, requested=False) == (False, "as requested")
    with caplog.at_level(logging.INFO, logger="tfvae"):
        conv.compile()
        dense.compile(jit_compile=False)
    assert conv.jit_compile is False and dense.jit_compile is False
    lines = [r.getMessage() for r in caplog.records if r.name == "tfvae"]
    assert lines == ["XLA off: convolutions on CPU run faster without XLA (pass jit_compile=True to force it).",
                     "XLA off: as requested."]
    with pytest.raises(ValueError, match="Expected jit_compile to be True, False or 'auto'"):
        dense.compile(jit_compile="yes")


def test_xla_rule_on_accelerators(monkeypatch):
    dense, conv = dense_and_conv()
    monkeypatch.setattr(strategies.tf.config, "list_logical_devices", lambda kind=None: ["/gpu:0"] if kind == "GPU" else [])
    assert strategies.choose_jit_compile(conv) == (True, "GPUs and TPUs run the step fastest under XLA")
    assert strategies.choose_jit_compile(dense)[0] is True
    assert strategies.choose_jit_compile(conv, requested=False)[0] is False


def test_the_cli_uses_the_same_rule(tmp_path):
    from conftest import MNIST_CLI, invoke_cli

    result = invoke_cli("train", *MNIST_CLI, "--train-split", "test[:256]",
                        "--eval-split", "test[9000:9100]", "--epochs", "1", "--architecture", "conv",
                        "--log-likelihood-samples", "0", "--no-export", "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert result.output.count("XLA off: convolutions on CPU run faster without XLA") == 1


def test_default_compile_runs_fused_executions_and_clamps_to_the_epoch(caplog):
    vae = tfvae.VAE.for_images((6, 5, 1), latent_dim=3, seed=1)
    vae.compile()
    assert vae.jit_compile is True and vae.steps_per_execution == 16 and vae._fuses_steps()
    x = (np.random.default_rng(0).random((40, 6, 5, 1)) < 0.5).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="tfvae"):
        history = vae.fit(x, batch_size=8, epochs=2, verbose=0)
    assert vae.steps_per_execution == 5 and "steps_per_execution is 5, not 16" in caplog.text
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_fit_on_arrays_equals_fit_on_the_same_batches_as_a_dataset():
    x = (np.random.default_rng(0).random((96, 6, 5, 1)) < 0.4).astype(np.float32)
    histories, weights = [], []
    for data in ("array", "dataset"):
        keras.utils.set_random_seed(3)
        vae = tfvae.VAE.for_images((6, 5, 1), latent_dim=3, seed=5)
        vae.compile(steps_per_execution=4)
        if data == "array":
            history = vae.fit(x, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_data=(x[:32],))
        else:
            dataset = tf.data.Dataset.from_tensor_slices(x).batch(16)
            history = vae.fit(dataset, epochs=3, verbose=0, validation_data=dataset.take(2))
        histories.append(history.history)
        weights.append(vae.get_weights())
    for key in ("loss", "elbo", "val_loss"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-5)
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_evaluate_on_arrays_matches_a_dataset():
    x = (np.random.default_rng(1).random((50, 6, 5, 1)) < 0.4).astype(np.float32)
    vae = tfvae.VAE.for_images((6, 5, 1), latent_dim=3, seed=5)
    vae.compile()
    first = vae.evaluate(x, batch_size=10, return_dict=True, verbose=0)
    vae.seed_generator.state.assign(tf.zeros_like(vae.seed_generator.state) + 5)  # same noise again
    vae2 = tfvae.VAE.from_config(vae.get_config())
    vae2.set_weights(vae.get_weights())
    vae2.compile()
    second = vae2.evaluate(tf.data.Dataset.from_tensor_slices(x).batch(10), return_dict=True, verbose=0)
    assert abs(first["reconstruction"] - second["reconstruction"]) < 1e-3 * abs(first["reconstruction"])


# Mixed precision ----------------------------------------------------------------------------------


def test_unknown_precision_lists_the_choices():
    with pytest.raises(ValueError, match="Unknown precision 'half'. Expected one of float32, mixed_bfloat16, mixed_float16"), \
            precision("half"):
        pass


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_saves_and_serves_float32(policy, tmp_path, binarized_mnist):
    from tfvae.export import export_saved_model

    train, held_out = binarized_mnist
    with precision(policy):
        vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=8, seed=0)
        vae.compile()
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the block
    compute = policy.split("_")[1]
    assert vae.encoder.body.layers[-1].compute_dtype == compute
    assert vae.encoder.to_params.compute_dtype == "float32" and vae.decoder.likelihood.compute_dtype == "float32"
    history = vae.fit(train[:2048], batch_size=128, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][-1] < history.history["loss"][0]
    if policy == "mixed_float16":
        assert isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
    x = held_out[:16]
    posterior = vae.encode(x)
    assert posterior.dtype == tf.float32 and vae.decode(posterior.mean()).mean().dtype == tf.float32
    for values in (vae.elbo(x), vae.log_likelihood(x, num_samples=10), vae.sample(3, seed=1), vae.reconstruct(x)):
        assert values.dtype == tf.float32 and np.isfinite(values.numpy()).all()
    vae.save(tmp_path / "m.keras")
    restored = tfvae.load_model(tmp_path / "m.keras")
    assert restored.encoder.body.layers[-1].compute_dtype == compute
    np.testing.assert_allclose(restored.encode(x).mean(), posterior.mean(), rtol=1e-5, atol=1e-5)
    loaded = tf.saved_model.load(str(export_saved_model(vae, tmp_path / "sm")))
    outputs = loaded.signatures["encode"](images=tf.constant(x))
    assert {t.dtype for t in outputs.values()} == {tf.float32}
    assert loaded.signatures["sample"](count=tf.constant(2), seed=tf.constant(0))["images"].dtype == tf.float32


@pytest.mark.slow
def test_bfloat16_trains_within_two_nats_of_float32(binarized_mnist):
    """The README's figure: held-out ELBO after the same budget, float32 vs mixed_bfloat16."""
    train, held_out = binarized_mnist
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.utils.set_random_seed(0)
        with precision(policy):
            vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, seed=0)
            vae.compile()
        vae.fit(train, batch_size=128, epochs=5, verbose=0)
        results[policy] = float(np.mean(vae.elbo(held_out, seed=0)))
    print(results)
    assert abs(results["mixed_bfloat16"] - results["float32"]) < 2.0, results


# Editable install ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_editable_install_gives_a_working_command(tmp_path):
    """`pip install -e .` in a venv that has `wheel` (as every venv with TensorFlow does)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "wheel", "setuptools>=64"], check=True)
    # Only the package itself is installed; its dependencies come from this environment (PYTHONPATH below).
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(REPO)], check=True, cwd=tmp_path)
    # Dependencies come from this environment, less any installed tfvae, which would shadow the editable one.
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in pathlib.Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("tfvae", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    env = {**os.environ, "PYTHONPATH": str(deps)}
    result = subprocess.run([str(venv / "bin" / "tfvae"), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage: tfvae" in result.stdout and "train" in result.stdout
    located = subprocess.run([str(venv / "bin" / "python"), "-c", "import tfvae.cli.main as m; print(m.__file__)"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert pathlib.Path(located.stdout.strip()) == REPO / "cli" / "main.py"  # edits to the checkout take effect
