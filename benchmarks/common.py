"""Shared by the benchmark scripts: machine facts, the datasets, the peer benchmarks' options, a printed table, and a
JSON-lines results file."""

import datetime
import json
import os
import pathlib
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = pathlib.Path(__file__).parent / "results.jsonl"
MNIST_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
DATASETS = {  # name -> (load_dataset arguments, train split, test split)
    "fashion_mnist": ({"name": "fashion_mnist"}, "train", "test"),
    "mnist-test": ({"name": "mnist", "data_dir": str(MNIST_DIR)}, "test[:8000]", "test[8000:]"),
}


def peer_benchmark_parser(description, epochs, quick, peer_venv):
    """The options every benchmark beside a peer takes: data, budget, NLL estimate, seed, and the peer's venv."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--dataset", choices=DATASETS, default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--k", type=int, default=5000, help="importance samples per image for the NLL")
    parser.add_argument("--nll-examples", type=int, default=1000, help="test images the NLL is taken over")
    parser.add_argument("--no-peer", action="store_true", help="tfvae's rows only")
    parser.add_argument("--seed", type=int, default=0, help="both systems' seed (initialization, batches, noise)")
    parser.add_argument("--peer-venv", type=pathlib.Path, default=peer_venv)
    return parser


def cpu_model():
    """The processor's model name (from /proc/cpuinfo where there is one): ratios between systems depend on it."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or "unknown"


def machine():
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tfp": tfp.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def report(benchmark, rows):
    """Prints `rows` (a list of dicts) as a table and appends them, with the machine, to results.jsonl."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {c: max(len(c), *(len(_fmt(row.get(c))) for row in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))
    record = {"benchmark": benchmark, "time": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(), "rows": rows}
    with open(RESULTS, "a") as f:
        f.write(json.dumps(record) + "\n")


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def timed(fn, repeats):
    """Wall-clock seconds of each of `repeats` calls of `fn`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def vae_for_images(fused=True, **options):
    """`tfvae.VAE.for_images(**options)`; with fused=False, a VAE that runs Keras's own
    `steps_per_execution` loop (one XLA launch per step) instead of tfvae's single program."""
    import tfvae

    class OneLaunchPerStep(tfvae.VAE):
        def _fuses_steps(self):
            return False

    return (tfvae.VAE if fused else OneLaunchPerStep).for_images(**options)


def peer_python(venv, requirements):
    """The python of a peer's own virtual environment `venv`, created from `requirements` on first use."""
    import subprocess
    import sys

    python = pathlib.Path(venv) / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
    return python


def run_json(command):
    """Runs `command` in its own process and returns the JSON object on the last line it prints."""
    import subprocess

    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def epoch_timer():
    """(callback, seconds): a Keras callback that appends each epoch's wall-clock seconds to `seconds`."""
    import keras

    seconds = []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    return EpochTimes(), seconds
