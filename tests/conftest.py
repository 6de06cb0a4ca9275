"""Shared fixtures: real data from ../shared and Debian's Fashion-MNIST, small and fixed."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def mnist_test_images():
    """The real MNIST test images as float32 (10000, 28, 28, 1) in [0, 1]."""
    from tfvae.data.idx import read_idx

    path = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.fail(f"The MNIST test set is expected at {MNIST_DIR}.")
    return read_idx(path)[..., None].astype(np.float32) / 255.0


@pytest.fixture(scope="session")
def binarized_mnist(mnist_test_images):
    """MNIST test images binarized once with a fixed seed: (train 8000, held-out 2000)."""
    rng = np.random.default_rng(0)
    binary = (rng.random(mnist_test_images.shape) < mnist_test_images).astype(np.float32)
    return binary[:8000], binary[8000:]


@pytest.fixture(scope="session")
def mnist_test_labels():
    """The real MNIST test labels, int64 (10000,)."""
    from tfvae.data.idx import read_idx

    path = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    if not path.exists():
        pytest.fail(f"The MNIST test labels are expected at {MNIST_DIR}.")
    return read_idx(path).astype(np.int64)


# The CLI's data options for the real MNIST test set on this machine.
MNIST_CLI = ["--dataset", "mnist", "--data-dir", str(MNIST_DIR), "--no-download"]


def invoke_cli(*args):
    """`tfvae ARGS` run in-process (each argument as str); click's Result with exit_code and output."""
    from click.testing import CliRunner
    from tfvae.cli.main import main

    return CliRunner().invoke(main, [str(a) for a in args])


def train_mnist_run(run, train_split, eval_split, epochs, latent_dim):
    """A small `tfvae train` run on real MNIST digits, without the final log-likelihood or an export: the run folder
    that the commands reading one (complete, explore, sample) are tried on. Returns `run`."""
    result = invoke_cli("train", *MNIST_CLI, "--train-split", train_split, "--eval-split", eval_split, "--epochs", epochs,
                        "--latent-dim", latent_dim, "--log-likelihood-samples", "0", "--no-export", "--output-dir", run,
                        "--quiet")
    assert result.exit_code == 0, result.output
    return run
