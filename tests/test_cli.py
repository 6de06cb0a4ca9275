"""The `tfvae` command line: errors without tracebacks, end to end on real data, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import MNIST_CLI, invoke_cli

TINY_RUN = [*MNIST_CLI, "--train-split", "test[:1000]", "--eval-split", "test[9000:9200]", "--epochs", "1",
            "--latent-dim", "4", "--log-likelihood-samples", "10", "--no-export", "--quiet"]



def test_help_does_not_import_tensorflow(tmp_path):
    code = "import sys; from tfvae.cli.main import main; assert 'tensorflow' not in sys.modules, 'imported'"
    # Run outside the source tree: `tfvae.cli` exists only in the installed package.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    result = invoke_cli("train", "--help")
    assert result.exit_code == 0 and "--warmup-epochs" in result.output and "[default: (128;" in result.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--dataset", "mnits"], 1, "Unknown dataset 'mnits'"),
        (["--dataset", "kmnist", "--no-download"], 1, "Could not load 'kmnist'"),
        ([*MNIST_CLI, "--train-split", "tset[:8000]"], 1, "Cannot read split 'tset[:8000]'"),
        ([*MNIST_CLI, "--batch-size", "0"], 2, "0 is not in the range x>=1"),
        ([*MNIST_CLI, "--epochs", "-3"], 2, "-3 is not in the range x>=1"),
        ([*MNIST_CLI, "--gaussian-scale", "-1"], 2, "expected a finite number > 0 or 'learned'"),
        ([*MNIST_CLI, "--gaussian-scale", "inf"], 2, "expected a finite number > 0 or 'learned'"),
        ([*MNIST_CLI, "--latent-dim", "2147483648"], 2, "2147483648 is not in the range 1<=x<=65536"),
        ([*MNIST_CLI, "--data-dir", "/no/such/dir"], 1, "does not exist"),
        ([*MNIST_CLI, "--train-split", "test[:10]"], 1, "fewer than one batch"),
    ],
)
def test_train_rejects_bad_input_with_a_message(args, code, message, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    result = invoke_cli("train", *args, "--output-dir", tmp_path / "run")
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke_cli("train", *TINY_RUN, "--output-dir", blocker / "run")
    assert result.exit_code == 1 and "is not writable" in result.output


@pytest.mark.slow
def test_train_evaluate_sample_reconstruct_export_on_mnist(tmp_path):
    run = tmp_path / "run"
    result = invoke_cli("train", *MNIST_CLI, "--train-split", "test[:8000]", "--eval-split", "test[8000:]", "--epochs", "3",
                        "--log-likelihood-samples", "100", "--output-dir", run, "--export-dir", tmp_path / "sm", "--quiet")
    assert result.exit_code == 0, result.output
    for name in ("run_config.json", "metrics.csv", "metrics.json", "samples.png", "reconstructions.png", "checkpoints/latest.json"):
        assert (run / name).is_file(), name
    assert any((run / "logs").rglob("events.out.tfevents.*"))
    assert (tmp_path / "sm" / "1" / "saved_model.pb").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(np.isfinite(metrics[k]) for k in ("elbo", "reconstruction", "kl", "log_likelihood"))
    assert metrics["elbo"] > -170 and metrics["log_likelihood"] >= metrics["elbo"] - 1
    rows = (run / "metrics.csv").read_text().splitlines()
    header, values = rows[0].split(","), [list(map(float, r.split(","))) for r in rows[1:]]
    val_elbo = [v[header.index("val_elbo")] for v in values]
    assert len(val_elbo) == 3 and val_elbo[-1] > val_elbo[0]

    result = invoke_cli("evaluate", run, *MNIST_CLI, "--split", "test[8000:]", "--log-likelihood-samples", "100", "--json")
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)  # log lines go to stderr
    assert evaluated["num_examples"] == 2000 and abs(evaluated["elbo"] - metrics["elbo"]) < 1e-3
    assert invoke_cli("sample", run, "-n", 16, "--out", tmp_path / "grid.png").exit_code == 0
    assert invoke_cli("reconstruct", run, *MNIST_CLI, "-n", 8, "--out", tmp_path / "recon.png").exit_code == 0
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (4 * 28, 4 * 28)
    assert Image.open(tmp_path / "recon.png").size == (2 * 3 * 28, 3 * 28)
    result = invoke_cli("export", run, "--export-dir", tmp_path / "sm")
    assert result.exit_code == 0 and (tmp_path / "sm" / "2" / "assets.extra" / "run_config.json").is_file()

    again = invoke_cli("train", *TINY_RUN, "--output-dir", run)
    assert again.exit_code == 1 and "--resume" in again.output
    changed = invoke_cli("train", *TINY_RUN, "--output-dir", run, "--resume")
    assert changed.exit_code == 1 and "different model settings" in changed.output


@pytest.mark.slow
def test_fashion_mnist_slice_with_conv_and_warmup(tmp_path):
    result = invoke_cli("train", "--dataset", "fashion_mnist", "--no-download", "--train-split", "train[:4000]",
                        "--eval-split", "test[:1000]", "--architecture", "conv", "--warmup-epochs", "1", "--epochs", "2",
                        "--log-likelihood-samples", "20", "--output-dir", tmp_path / "run", "--no-export", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert np.isfinite(metrics["elbo"]) and metrics["elbo"] > -400 and metrics["active_units"] >= 1


@pytest.mark.slow
def test_killed_run_resumes_from_the_last_complete_checkpoint(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "tfvae.cli", "train", "--dataset", "fashion_mnist", "--no-download",
            "--train-split", "train[:30000]", "--eval-split", "test[:500]", "--batch-size", "32", "--epochs", "4",
            "--latent-dim", "8", "--log-likelihood-samples", "10", "--no-export", "--quiet", "--output-dir", str(run)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    latest = run / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    while not latest.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert latest.exists(), process.communicate()[0].decode()[-2000:]
    time.sleep(1.0)  # now inside the second epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = json.loads(latest.read_text())["epoch"]
    assert 1 <= killed_at < 4
    for checkpoint in (run / "checkpoints").glob("*.keras"):  # complete ones only, all loadable
        assert not checkpoint.name.startswith(".")
        keras.models.load_model(checkpoint)

    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"Epoch {killed_at + 1}/4" in resumed.stdout and "Epoch 1/4" not in resumed.stdout
    assert json.loads(latest.read_text())["epoch"] == 4
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert (run / "metrics.json").is_file()
