"""Start-up: `tfvae --help` wall time (target < 1 s), and the time from a fresh process to the
end of its first training step (imports, data, model, compilation), with XLA on and off.

    python -m benchmarks.startup [--quick]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import report

FIRST_STEP = """
import sys, time
start = float(sys.argv[1])
import keras, tfvae
from tfvae.data import load_dataset
data = load_dataset("fashion_mnist", split="train", batch_size=128, download=False, drop_remainder=True)
vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, seed=0)
vae.compile(jit_compile=sys.argv[2] == "jit")
done = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: print(time.time() - start, flush=True) or sys.exit(0))
vae.fit(data, epochs=1, verbose=0, callbacks=[done])
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 7")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    tfvae_command = shutil.which("tfvae") or sys.exit("Install tfvae first (pip install .): the benchmark runs its command.")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = []
    with tempfile.TemporaryDirectory() as workdir:  # outside the source tree: the installed package runs
        help_times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([tfvae_command, "--help"], check=True, capture_output=True, cwd=workdir)
            help_times.append(time.perf_counter() - start)
        rows.append({"what": "tfvae --help", "median_s": statistics.median(help_times), "min_s": min(help_times), "target_s": 1.0})
        for mode in ("jit", "nojit"):
            times = []
            for _ in range(max(1, repeats // 2)):
                out = subprocess.run([sys.executable, "-c", FIRST_STEP, str(time.time()), mode],
                                     check=True, capture_output=True, text=True, cwd=workdir, env=env)
                times.append(float(out.stdout.strip().splitlines()[-1]))
            rows.append({"what": f"process start to first step ({mode})", "median_s": statistics.median(times), "min_s": min(times)})
    report("startup", rows)


if __name__ == "__main__":
    main()
