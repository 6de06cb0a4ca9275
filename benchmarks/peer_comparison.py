"""tfvae's default Python path against the loops a PyTorch or JAX engineer would write, side by side.

MLP 784-400-20, Bernoulli, batch 128, Adam 1e-3, binarized Fashion-MNIST 60k (one fixed
binarization shared by all). Each system runs in its own fresh process, the systems taking
turns round by round; the figure is the median over rounds of each run's steady-state
examples/s (epochs after the first). tfvae runs exactly as the README's "In Python" shows:
`vae.compile()` with no arguments, then `vae.fit(numpy_array, batch_size=128)`. The peers
(an eager PyTorch loop; a JAX/Flax loop with `jax.jit` per step, and with 16 steps per compiled
call by `jax.lax.scan`) run in their own virtual environment, installed from
benchmarks/peers/requirements.txt on first use. Also the conv model (on the first 12,800
examples): tfvae's default against XLA forced on.

    python -m benchmarks.peer_comparison [--quick] [--rounds 3] [--peers-venv DIR]
"""

import argparse
import json
import pathlib
import statistics
import sys
import tempfile

from benchmarks.common import epoch_timer, peer_python, report, run_json

HERE = pathlib.Path(__file__).parent
PEERS = HERE / "peers"
BATCH = 128
CONV_EXAMPLES = 12800


def binarized_fashion_mnist(path, count=None):
    import numpy as np

    from tfvae.data.idx import read_idx

    images = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")[:count, ..., None] / 255.0
    binary = (np.random.default_rng(0).random(images.shape) < images).astype(np.float32)
    np.save(path, binary)


def tfvae_worker(data_path, epochs, architecture, jit_compile):
    """Runs in a fresh process: the README's Python path, timing each epoch with a callback."""
    import numpy as np

    import tfvae

    x = np.load(data_path)
    vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=20, architecture=architecture)
    vae.compile() if jit_compile == "default" else vae.compile(jit_compile=jit_compile == "on")

    timer, seconds = epoch_timer()
    history = vae.fit(x, batch_size=BATCH, epochs=int(epochs), verbose=0, callbacks=[timer])
    steps = -(-len(x) // BATCH)
    rate = len(x) / statistics.median(seconds[1:])
    print(json.dumps({"examples_per_second": rate, "loss": history.history["loss"][-1], "steps": steps,
                      "jit_compile": bool(vae.jit_compile), "steps_per_execution": vae.steps_per_execution}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 epochs: a smoke run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="per run; the first is not timed")
    parser.add_argument("--peers-venv", type=pathlib.Path, default=HERE / ".peers-venv")
    args = parser.parse_args()
    rounds, epochs = (2, 3) if args.quick else (args.rounds, args.epochs)
    peers_python = str(peer_python(args.peers_venv, PEERS / "requirements.txt"))
    from benchmarks.training_throughput import dense_training_flops_per_example, matmul_flops_per_second

    with tempfile.TemporaryDirectory() as tmp:
        data = str(pathlib.Path(tmp) / "fashion_mnist_binarized.npy")
        binarized_fashion_mnist(data)
        conv_data = str(pathlib.Path(tmp) / "fashion_mnist_binarized_12800.npy")  # conv epochs are ~15x slower
        binarized_fashion_mnist(conv_data, CONV_EXAMPLES)
        me = [sys.executable, "-m", "benchmarks.peer_comparison", "--worker"]
        systems = {
            "tfvae: compile() defaults, fit(numpy)": [*me, data, str(epochs), "mlp", "default"],
            "PyTorch eager loop": [peers_python, str(PEERS / "torch_loop.py"), data, str(BATCH), str(epochs)],
            "JAX/Flax, jax.jit per step": [peers_python, str(PEERS / "jax_loop.py"), data, str(BATCH), str(epochs)],
            "JAX/Flax, lax.scan 16 steps per call": [peers_python, str(PEERS / "jax_loop.py"), data, str(BATCH), str(epochs), "--scan", "16"],
            "tfvae conv: compile() defaults": [*me, conv_data, str(epochs), "conv", "default"],
            "tfvae conv: XLA forced on": [*me, conv_data, str(epochs), "conv", "on"],
        }
        rates = {name: [] for name in systems}
        details = {}
        for _ in range(rounds):
            for name, command in systems.items():
                result = run_json(command)
                rates[name].append(result["examples_per_second"])
                details[name] = result
        import tfvae

        flops = dense_training_flops_per_example(tfvae.VAE.for_images((28, 28, 1), latent_dim=20))
        limit = matmul_flops_per_second()
    torch_rate = statistics.median(rates["PyTorch eager loop"])
    jax_scan_rate = statistics.median(rates["JAX/Flax, lax.scan 16 steps per call"])
    rows = []
    for name, values in rates.items():
        rate = statistics.median(values)
        row = {"system": name, "examples_per_s": rate, "vs_pytorch": rate / torch_rate, "vs_jax_scan": rate / jax_scan_rate}
        if "conv" not in name:
            row["matmul_limit_fraction"] = rate * flops / limit
        if "jit_compile" in details[name]:
            row["xla"] = details[name]["jit_compile"]
        rows.append(row)
    report("peer_comparison", rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        tfvae_worker(*sys.argv[2:])
    else:
        main()
