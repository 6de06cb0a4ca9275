"""Helmholtz machines: one and two stochastic layers, Gaussian or binary, trained by every objective that
applies (ELBO, IWAE, wake-sleep, reweighted wake-sleep) at equal epochs, beside Pyro's ReweightedWakeSleep on
the same sigmoid belief network in its own virtual environment.

Per row: held-out NLL by importance sampling (the first `--nll-examples` test images, `--k` samples), −ELBO,
seconds per epoch (the median after the first), its cost relative to the one-layer Gaussian VAE, whether the
row ran on the fused XLA training path, and the active units of each layer (`tfvae.evaluation.latent_statistics`:
the variance over the test images of E_q[h], in units of the prior's variance, above 0.01 — Burda et al.'s
criterion). Gaussian rows use Burda et al.'s networks (one layer: 50 units, tanh 200-200; two layers: 100 and
50 units, tanh 200-200 and 100-100); binary rows are the sigmoid belief network with linear conditionals
(200-200). Every system reads the same fixed binarization of each split; every run is its own process.
Pyro weighs each image's K particles on their own (its ReweightedWakeSleep called per image, gradients summed
over the batch: the per-example bound tfvae trains; called on a whole batch, Pyro normalizes the weights over
the batch jointly) and runs on one thread, its faster setting for these small per-image calls.

    python -m benchmarks.helmholtz [--quick] [--dataset fashion_mnist | mnist-test] [--epochs 10] [--k 5000]
        [--nll-examples 1000] [--rows NAME ...] [--no-peer] [--seed 0] [--warmup-epochs 0]

`--warmup-epochs N` trains every row whose objective has a KL weight β (the ELBO and IWAE rows) with KL
warm-up, β rising from 0 to 1 over the first N epochs (`tfvae.KLWarmup`, Sønderby et al. 2016); the
wake-sleep rows have no β and train as without it.
"""

import json
import pathlib
import statistics
import sys
import tempfile

import numpy as np

from benchmarks.common import epoch_timer, peer_benchmark_parser, peer_python, report, run_json
from benchmarks.flexible import binarized

HERE = pathlib.Path(__file__).parent
PEER = HERE / "peers" / "pyro_rws.py"
BATCH, LEARNING_RATE = 100, 1e-3
ONE_GAUSSIAN = {"latent_dims": (50,), "hidden_units": ((200, 200),)}
TWO_GAUSSIAN = {"latent_dims": (100, 50), "hidden_units": ((200, 200), (100, 100))}
BELIEF_NETWORK = {"latent_dims": (200, 200), "hidden_units": ((), ()), "latent_type": "bernoulli"}
ROWS = {  # name -> HierarchicalVAE.for_images options
    "gaussian 1 layer, VAE": {**ONE_GAUSSIAN, "objective": "elbo"},
    "gaussian 1 layer, IWAE k=50": {**ONE_GAUSSIAN, "objective": "iwae", "num_samples": 50},
    "gaussian 2 layers, VAE": {**TWO_GAUSSIAN, "objective": "elbo"},
    "gaussian 2 layers, IWAE k=50": {**TWO_GAUSSIAN, "objective": "iwae", "num_samples": 50},
    "gaussian 2 layers, IWAE k=50 DReG": {**TWO_GAUSSIAN, "objective": "iwae", "num_samples": 50,
                                          "gradient_estimator": "doubly_reparameterized"},
    "gaussian 2 layers, RWS k=5": {**TWO_GAUSSIAN, "objective": "reweighted_wake_sleep", "num_samples": 5},
    "gaussian 2 layers, RWS k=50": {**TWO_GAUSSIAN, "objective": "reweighted_wake_sleep", "num_samples": 50},
    "gaussian 2 layers, wake-sleep": {**TWO_GAUSSIAN, "objective": "wake_sleep"},
    "binary 200-200, score function": {**BELIEF_NETWORK, "objective": "elbo", "gradient_estimator": "score_function"},
    "binary 200-200, VIMCO k=5": {**BELIEF_NETWORK, "objective": "iwae", "num_samples": 5},
    "binary 200-200, VIMCO k=50": {**BELIEF_NETWORK, "objective": "iwae", "num_samples": 50},
    "binary 200-200, wake-sleep": {**BELIEF_NETWORK, "objective": "wake_sleep"},
    "binary 200-200, RWS k=5": {**BELIEF_NETWORK, "objective": "reweighted_wake_sleep", "num_samples": 5},
    "binary 200-200, RWS k=50": {**BELIEF_NETWORK, "objective": "reweighted_wake_sleep", "num_samples": 50},
}
PEER_ROWS = ("binary 200-200, RWS k=5", "binary 200-200, RWS k=50")  # Pyro runs the same model beside these


def tfvae_worker(train_path, test_path, row, epochs, k, nll_examples, seed=0, warmup_epochs=0):
    """In a fresh process: one row trained and scored, as JSON."""
    import keras

    import tfvae
    from tfvae.evaluation import ACTIVE_UNIT_THRESHOLD, latent_statistics
    from tfvae.names import WAKE_SLEEP

    train, test = np.load(train_path), np.load(test_path)
    keras.utils.set_random_seed(seed)
    vae = tfvae.HierarchicalVAE.for_images((28, 28, 1), seed=seed, **ROWS[row])
    vae.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    timer, seconds = epoch_timer()
    if vae.objective in WAKE_SLEEP:
        warmup_epochs = 0
    warmup = [tfvae.KLWarmup(warmup_epochs)] if warmup_epochs else []
    vae.fit(train, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[timer, *warmup])
    scored = test[:nll_examples]
    activity = latent_statistics(vae, test)["activity"]
    active = np.split(activity > ACTIVE_UNIT_THRESHOLD, np.cumsum(vae.latent_dims)[:-1])
    print(json.dumps({
        "system": "tfvae", "row": row, "epochs": epochs, "seconds_per_epoch": statistics.median(seconds[1:] or seconds),
        "nll": -float(np.mean(vae.log_likelihood(scored, num_samples=k, seed=0))),
        "negative_elbo": -float(np.mean(vae.elbo(scored, num_samples=100, seed=0))), "nll_samples": k,
        "active_units": "/".join(f"{int(layer.sum())} of {layer.size}" for layer in active),
        "fused_xla": bool(vae.jit_compile) and vae._fuses_steps(), "estimator": vae.gradient_estimator, "seed": seed,
        "warmup_epochs": warmup_epochs,
    }))


def pyro_row(python, train_path, test_path, row, epochs, k, nll_examples, seed):
    options = ROWS[row]
    result = run_json([python, PEER, "--train", train_path, "--test", test_path, "--epochs", epochs, "--batch-size", BATCH,
                       "--learning-rate", LEARNING_RATE, "--latent-dims", ",".join(map(str, options["latent_dims"])),
                       "--num-samples", options["num_samples"], "--nll-samples", k, "--nll-examples", nll_examples,
                       "--weighting", "example", "--threads", 1, "--seed", seed, "--quiet"])
    return {"system": f"pyro {result['pyro_version']}", "row": row, "epochs": epochs,
            "seconds_per_epoch": result["seconds_per_epoch"], "nll": result["nll"], "nll_samples": k, "seed": seed}


def main():
    parser = peer_benchmark_parser(__doc__, epochs=10, quick="1 epoch on 2000 images, k = 100 on 100 images",
                                   peer_venv=HERE / ".pyro-venv")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS), metavar="NAME")
    parser.add_argument("--warmup-epochs", type=int, default=0, help="KL warm-up over this many epochs (rows with a β)")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.k, args.nll_examples = 2, 100, 100
    pyro = None if args.no_peer else peer_python(args.peer_venv, HERE / "peers" / "pyro_requirements.txt")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        train_path, test_path = binarized(args.dataset, directory)
        if args.quick:
            np.save(train_path, np.load(train_path)[:2000])
        for row in args.rows:
            rows.append({"dataset": args.dataset, **run_json(
                [sys.executable, "-m", "benchmarks.helmholtz", "--worker", train_path, test_path, row, args.epochs, args.k,
                 args.nll_examples, args.seed, args.warmup_epochs])})
            print(rows[-1], flush=True)
            if pyro and row in PEER_ROWS:
                rows.append({"dataset": args.dataset,
                             **pyro_row(pyro, train_path, test_path, row, args.epochs, args.k, args.nll_examples, args.seed)})
                print(rows[-1], flush=True)
    base = next((row for row in rows if row["row"] == "gaussian 1 layer, VAE" and row["system"] == "tfvae"), None)
    for row in rows:
        if base:
            row["cost_vs_one_layer_vae"] = row["seconds_per_epoch"] / base["seconds_per_epoch"]
        tfvae_row = next((other for other in rows if other["row"] == row["row"] and other["system"] == "tfvae"), None)
        if row["system"] != "tfvae" and tfvae_row:
            tfvae_row["peer_over_tfvae_seconds"] = row["seconds_per_epoch"] / tfvae_row["seconds_per_epoch"]
            tfvae_row["nll_minus_peer"] = tfvae_row["nll"] - row["nll"]
    report("helmholtz", rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        tfvae_worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]),
                     int(sys.argv[9]))
    else:
        main()
