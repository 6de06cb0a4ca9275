"""tf.distribute on this CPU machine: two logical devices, two worker processes, and a worker killed mid-run.

Each scenario runs in fresh processes (tests/distributed_worker.py), because devices
and the cluster are fixed when TensorFlow starts.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import MNIST_DIR

pytestmark = pytest.mark.slow
WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")


def run_worker(*args, timeout=600):
    return subprocess.run([sys.executable, WORKER, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=True)


def test_mirrored_step_equals_the_single_device_step(tmp_path):
    result = run_worker("mirrored-step", tmp_path / "out.npz")
    out = np.load(tmp_path / "out.npz")
    assert int(out["replicas"]) == 2
    # vae.compile() defaults under MirroredStrategy over 2 CPUs: XLA off and one step per execution, each said once.
    assert not bool(out["jit"]) and result.stderr.count("XLA off: MirroredStrategy with 2 replicas on CPU devices") == 1
    assert "steps_per_execution is 1, not 16" in result.stderr
    np.testing.assert_allclose(out["fit_loss"], out["reference_loss"], rtol=1e-5)
    pairs = [(out[f"applied_{i}"], out[f"reference_{i}"]) for i in range(len(out.files)) if f"applied_{i}" in out.files]
    assert len(pairs) == 8  # every kernel and bias of both networks
    for applied, reference in pairs:
        np.testing.assert_allclose(applied, reference, rtol=1e-3, atol=1e-5)


def test_mirrored_training_converges_like_one_device(tmp_path):
    run_worker("mirrored-fit", MNIST_DIR, tmp_path / "out.json")
    results = json.loads((tmp_path / "out.json").read_text())
    one, mirrored = results["one-device"], results["mirrored"]
    assert (one["replicas"], mirrored["replicas"]) == (1, 2)
    assert mirrored["after"] > mirrored["before"] + 250
    assert abs(mirrored["after"] - one["after"]) < 5.0, results


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Cluster:
    """Two worker processes on 127.0.0.1 running the library's `train` with the multi-worker strategy."""

    def __init__(self, tmp_path, **settings):
        self.tmp_path = tmp_path
        self.ports = free_ports(2)
        self.config = {
            "dataset": "mnist", "data_dir": str(MNIST_DIR), "eval_split": "test[9000:9500]", "latent_dim": 8,
            "strategy": "multi-worker", "log_likelihood_samples": 10, "output_dir": str(tmp_path / "run"),
            "export_dir": str(tmp_path / "saved"), **settings,
        }
        (tmp_path / "config.json").write_text(json.dumps(self.config))
        self.processes = {}

    def start(self, index, attempt):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in self.ports]}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        log = open(self.tmp_path / f"worker{index}-{attempt}.log", "w")  # noqa: SIM115 -- closed by the process's end
        self.processes[index] = subprocess.Popen(
            [sys.executable, WORKER, "train", self.tmp_path / "config.json", self.tmp_path / f"weights{index}.npz"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.tmp_path,
        )

    def wait(self, timeout=300):
        deadline = time.time() + timeout
        codes = {}
        for index, process in self.processes.items():
            try:
                codes[index] = process.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[index] = process.wait()
        return codes

    def log(self, index, attempt):
        return (self.tmp_path / f"worker{index}-{attempt}.log").read_text()


def test_two_workers_train_to_identical_weights_and_the_chief_writes(tmp_path):
    cluster = Cluster(tmp_path, train_split="test[:4096]", epochs=2, batch_size=128)
    cluster.start(0, "a")
    cluster.start(1, "a")
    assert cluster.wait() == {0: 0, 1: 0}, cluster.log(0, "a")[-3000:] + cluster.log(1, "a")[-3000:]
    chief, worker = np.load(tmp_path / "weights0.npz"), np.load(tmp_path / "weights1.npz")
    assert len(chief.files) == 8
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], worker[key])
    run = tmp_path / "run"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["epoch"] == 2
    assert (run / "metrics.json").is_file() and (tmp_path / "saved" / "1" / "saved_model.pb").is_file()
    assert not (run / "workers" / "worker-1" / "metrics.json").exists()
    # The checkpoint written under 2 replicas restores here, on one device, with the trained weights.
    import tfvae

    restored = tfvae.load_model(run / "checkpoints" / "epoch-0002.keras")
    assert int(restored.optimizer.iterations) == 64
    for variable, key in zip(restored.trainable_weights, chief.files):
        np.testing.assert_array_equal(variable.numpy(), chief[key])
    log = cluster.log(0, "a")
    assert "XLA off: MultiWorkerMirroredStrategy with 2 replicas on CPU devices" in log and "steps_per_execution is 1, not 16" in log and "32/32" in log  # 4096 examples / global batch 128, shared by both workers


def test_a_killed_worker_restarts_and_the_run_continues_from_the_backup(tmp_path):
    cluster = Cluster(tmp_path, train_split="test[:8000]", epochs=4, batch_size=32, export_dir="")
    cluster.start(0, "a")
    cluster.start(1, "a")
    backup = tmp_path / "run" / "backup" / "worker-0" / "training_metadata.json"
    deadline = time.time() + 300
    while not backup.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert backup.exists(), cluster.log(0, "a")[-3000:]
    time.sleep(1.0)
    os.kill(cluster.processes[1].pid, signal.SIGKILL)
    # The surviving worker fails once its peer is gone (or is stopped by the job's manager, as here after 60 s).
    cluster.wait(timeout=60)
    backed_up = json.loads(backup.read_text())["epoch"]
    assert 1 <= backed_up < 4

    cluster.start(0, "b")
    cluster.start(1, "b")
    assert cluster.wait() == {0: 0, 1: 0}, cluster.log(0, "b")[-3000:] + cluster.log(1, "b")[-3000:]
    resumed = cluster.log(0, "b")
    assert f"Epoch {backed_up + 1}/4" in resumed and "Epoch 1/4" not in resumed
    assert json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())["epoch"] == 4
    chief, worker = np.load(tmp_path / "weights0.npz"), np.load(tmp_path / "weights1.npz")
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], worker[key])


def cli(tmp_path, name, tf_config=None, **popen):
    """`tfvae train --strategy multi-worker` in its own process (a strategy is fixed when TensorFlow starts)."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    command = [sys.executable, "-m", "tfvae.cli", "train", "--dataset", "mnist", "--data-dir", str(MNIST_DIR), "--no-download",
               "--train-split", "test[:1024]", "--eval-split", "test[9000:9200]", "--epochs", "2", "--latent-dim", "4",
               "--strategy", "multi-worker", "--log-likelihood-samples", "5", "--output-dir", str(tmp_path / "run"),
               "--no-export", "--quiet"]
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 -- closed by the process's end
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, **popen)


@pytest.mark.parametrize("tf_config", [None, "one worker"], ids=["no TF_CONFIG", "a one-worker TF_CONFIG"])
def test_a_single_multi_worker_run_finishes_from_the_command_line(tmp_path, tf_config):
    if tf_config:
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{free_ports(1)[0]}"]}, "task": {"type": "worker", "index": 0}}
    process = cli(tmp_path, "single", tf_config)
    assert process.wait(timeout=600) == 0, (tmp_path / "single.log").read_text()[-3000:]
    assert json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())["epoch"] == 2
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_two_workers_finish_from_the_command_line(tmp_path):
    ports = free_ports(2)
    processes = [cli(tmp_path, f"worker{index}", {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                                  "task": {"type": "worker", "index": index}}) for index in (0, 1)]
    codes = [process.wait(timeout=600) for process in processes]
    assert codes == [0, 0], (tmp_path / "worker0.log").read_text()[-3000:] + (tmp_path / "worker1.log").read_text()[-3000:]
    assert json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())["epoch"] == 2
