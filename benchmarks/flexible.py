"""Flexible posteriors and learned priors, side by side with pythae: held-out NLL (importance sampling),
−ELBO and seconds per epoch of the MLP VAE with a diagonal or an inverse autoregressive flow posterior and a
N(0, I) or VampPrior prior, and Burda et al.'s two-layer model (100 and 50 units) with and without a VampPrior
on its top layer, beside pythae's VAE, VAE_IAF and VAMP with the same networks, data, batch size, optimizer
and epochs.

Both systems train on one fixed binarization of the training images (the same array, saved once) and are
scored on one fixed binarization of the test images; NLL uses the first `--nll-examples` test images with
`--k` importance samples. pythae runs in its own virtual environment, installed on first use from
benchmarks/peers/pythae_requirements.txt. Every run is its own process, the systems taking turns.

    python -m benchmarks.flexible [--quick] [--dataset fashion_mnist | mnist-test] [--epochs 20] [--k 5000]
        [--nll-examples 1000] [--models vae iaf vamp iaf+vamp "2 layers" "2 layers+vamp"] [--no-peer]
        [--initializer default | glorot | he | torch] [--iaf-update affine | gated] [--seed 0]

`--initializer` re-initializes every Dense layer of tfvae's models after building them: `default` keeps tfvae's
own (`tfvae.networks.fan_in_uniform` kernels, zero biases; records before 2026-12-07 name Keras's Glorot
default, tfvae's until then, "keras"), `glorot` draws Glorot-uniform kernels (zero biases), `he` He-uniform ones
(zero biases), `torch` kernels and biases as PyTorch's `nn.Linear` does, U(±1/√fan_in) (pythae's networks
start so). `--iaf-update` is the flow's step (`tfvae.posteriors.InverseAutoregressiveFlow(update=...)`): tfvae's
default "affine", the update pythae's flow uses, or "gated" (records name the update they ran; flow records
without `iaf_update` ran the gated one).
"""

import json
import pathlib
import statistics
import sys
import tempfile

import numpy as np

from benchmarks.common import DATASETS, epoch_timer, peer_benchmark_parser, peer_python, report, run_json

HERE = pathlib.Path(__file__).parent
PEER = HERE / "peers" / "pythae_flexible.py"
BATCH, LATENT, HIDDEN, LEARNING_RATE = 128, 20, 400, 1e-3
NUM_PSEUDO_INPUTS, IAF_STEPS, IAF_HIDDEN = 500, 2, 320
# tfvae's parts for each row, and pythae's model for the same row (None: pythae has no such model).
MODELS = {
    "vae": ({"prior": "standard_normal", "posterior": "diagonal"}, "vae"),
    "iaf": ({"prior": "standard_normal", "posterior": "iaf"}, "iaf"),
    "vamp": ({"prior": "vamp", "posterior": "diagonal"}, "vamp"),
    "iaf+vamp": ({"prior": "vamp", "posterior": "iaf"}, None),
    "2 layers": ({"prior": "standard_normal", "latent_dims": (100, 50)}, None),  # Burda et al.'s two-layer model
    "2 layers+vamp": ({"prior": "vamp", "latent_dims": (100, 50)}, None),  # the VampPrior on its top layer
}


def reinitialize(model, initializer, seed=0):
    """Draws every Dense layer's weights in `model` afresh by `initializer`, "glorot", "he" or "torch" (see the
    module docstring)."""
    import keras

    dense = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dense)]
    for index, layer in enumerate(dense):
        fan_in = layer.kernel.shape[0]
        if initializer in ("glorot", "he"):
            kernel_class = keras.initializers.GlorotUniform if initializer == "glorot" else keras.initializers.HeUniform
            kernel, bias = kernel_class(seed=seed + index), keras.initializers.Zeros()
        else:
            kernel = bias = keras.initializers.RandomUniform(-fan_in ** -0.5, fan_in ** -0.5, seed=seed + index)
        layer.kernel.assign(kernel(layer.kernel.shape))
        if layer.bias is not None:
            layer.bias.assign(bias(layer.bias.shape))


def tfvae_worker(train_path, test_path, model, epochs, k, nll_examples, initializer="default", seed=0, iaf_update="affine"):
    """In a fresh process: one tfvae model trained and scored, as JSON."""
    import keras

    import tfvae
    from tfvae.posteriors import InverseAutoregressiveFlow
    from tfvae.priors import VampPrior

    parts, _ = MODELS[model]
    train, test = np.load(train_path), np.load(test_path)
    keras.utils.set_random_seed(seed)
    prior = VampPrior(NUM_PSEUDO_INPUTS) if parts["prior"] == "vamp" else parts["prior"]
    if "latent_dims" in parts:
        vae = tfvae.HierarchicalVAE.for_images((28, 28, 1), latent_dims=parts["latent_dims"], prior=prior, seed=seed)
    else:
        posterior = (InverseAutoregressiveFlow(IAF_STEPS, (IAF_HIDDEN, IAF_HIDDEN), update=iaf_update)
                     if parts["posterior"] == "iaf"
                     else parts["posterior"])
        vae = tfvae.VAE.for_images((28, 28, 1), latent_dim=LATENT, prior=prior, posterior=posterior, seed=seed)
    if initializer != "default":  # tfvae's own initialization needs no second draw
        vae(train[:1])  # builds every layer, so the initializer can reach its weights
        reinitialize(vae, initializer, seed)
    vae.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    timer, seconds = epoch_timer()
    vae.fit(train, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[timer])
    scored = test[:nll_examples]
    print(json.dumps({
        "system": "tfvae", "model": model, "epochs": epochs, "seconds_per_epoch": statistics.median(seconds[1:] or seconds),
        "nll": -float(np.mean(vae.log_likelihood(scored, num_samples=k, seed=0))),
        "negative_elbo": -float(np.mean(vae.elbo(scored, seed=0))), "nll_samples": k,
        "xla": bool(vae.jit_compile), "kl": vae.kl_estimator, "initializer": initializer, "seed": seed,
        **({"iaf_context_units": posterior.context_size(LATENT), "iaf_update": iaf_update}
           if parts.get("posterior") == "iaf" else {}),
    }))


def binarized(dataset, directory):
    """(train.npy, test.npy): one fixed binarization of each split, the arrays both systems read."""
    from tfvae.data import load_dataset
    from tfvae.evaluation import collect

    source, train_split, test_split = DATASETS[dataset]
    paths = []
    for split, name in ((train_split, "train"), (test_split, "test")):
        images = collect(load_dataset(**source, split=split, binarize="static", shuffle=False, download=False,
                                      seed=0 if name == "train" else 1))[0]
        paths.append(pathlib.Path(directory) / f"{name}.npy")
        np.save(paths[-1], images)
    return paths


def main():
    parser = peer_benchmark_parser(__doc__, epochs=20, quick="2 epochs, k = 100 on 100 images",
                                   peer_venv=HERE / ".pythae-venv")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--initializer", choices=("default", "glorot", "he", "torch"), default="default",
                        help="how tfvae's Dense layers start [default: tfvae's own]")
    parser.add_argument("--iaf-update", choices=("affine", "gated"), default="affine", help="the flow's step [default: affine]")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.k, args.nll_examples = 2, 100, 100
    pythae = None if args.no_peer else str(peer_python(args.peer_venv, HERE / "peers" / "pythae_requirements.txt"))
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        train_path, test_path = binarized(args.dataset, directory)
        for model in args.models:
            _, peer_model = MODELS[model]
            result = run_json([sys.executable, "-m", "benchmarks.flexible", "--worker", train_path, test_path, model,
                               str(args.epochs), str(args.k), str(args.nll_examples), args.initializer, str(args.seed), args.iaf_update])
            rows.append({"dataset": args.dataset, **result})
            print(rows[-1], flush=True)
            if pythae and peer_model:
                peer = run_json([pythae, str(PEER), "--model", peer_model, "--train", train_path, "--test", test_path,
                                 "--epochs", str(args.epochs), "--batch-size", str(BATCH), "--learning-rate",
                                 str(LEARNING_RATE), "--latent-dim", str(LATENT), "--hidden", str(HIDDEN),
                                 "--nll-samples", str(args.k), "--nll-examples", str(args.nll_examples),
                                 "--num-pseudo-inputs", str(NUM_PSEUDO_INPUTS), "--iaf-steps", str(IAF_STEPS),
                                 "--iaf-hidden", str(IAF_HIDDEN), "--iaf-made-layers", "2", "--seed", str(args.seed), "--quiet"])
                rows.append({"dataset": args.dataset, **{key: peer[key] for key in
                                                        ("system", "model", "epochs", "seconds_per_epoch", "nll",
                                                         "negative_elbo", "nll_samples")}, "seed": args.seed})
                print(rows[-1], flush=True)
    base = {row["system"]: row for row in rows if row["model"] == "vae"}
    for row in rows:
        if row["system"] in base:
            row["cost_vs_vae"] = row["seconds_per_epoch"] / base[row["system"]]["seconds_per_epoch"]
        peer = next((other for other in rows if other["system"] == "pythae" and other["model"] == row["model"]), None)
        if row["system"] == "tfvae" and peer:
            row["pythae_over_tfvae_seconds"] = peer["seconds_per_epoch"] / row["seconds_per_epoch"]
            row["nll_minus_pythae"] = row["nll"] - peer["nll"]
    report("flexible", rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        tfvae_worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), sys.argv[8], int(sys.argv[9]),
                     sys.argv[10])
    else:
        main()
