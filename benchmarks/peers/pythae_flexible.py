"""pythae's VAE, VAMP and VAE_IAF (PyTorch, pythae 0.1.2) trained as a pythae user would, on tfvae's data and sizes.

tfvae's flexible-posterior / flexible-prior benchmark runs this script as a subprocess with the python of
its own virtual environment (benchmarks/.pythae-venv, from benchmarks/peers/pythae_requirements.txt) and
reads the one JSON line it prints on stdout (everything else goes to stderr), to put pythae's epoch time,
importance-sampled NLL and -ELBO next to tfvae's in one run. The networks are tfvae's default MLP: encoder
784 -> Dense 400 ReLU -> (mu, log-variance) of a diagonal Gaussian with --latent-dim units each; decoder
latent -> Dense 400 ReLU -> Dense 784 -> sigmoid, Bernoulli likelihood (pythae's reconstruction_loss="bce").
Training is pythae's own TrainingPipeline (BaseTrainer, Adam, shuffled mini-batches) on CPU.

    python pythae_flexible.py --model {vae,vamp,iaf} --train TRAIN.npy --test TEST.npy --epochs E
        --batch-size B --learning-rate LR --latent-dim D --hidden 400 --nll-samples K
        [--num-pseudo-inputs 500] [--iaf-steps 2] [--iaf-hidden 320] [--iaf-made-layers 2]
        [--posterior-scale {log_var,softplus}] [--seed S] [--nll-examples N] [--quiet]
    -> {"system": "pythae", "model": ..., "seconds_per_epoch": ..., "nll": ..., "negative_elbo": ..., ...}

TRAIN.npy and TEST.npy hold float32 (N, 28, 28, 1) arrays of exactly 0s and 1s (already binarized). The
figures: seconds_per_epoch is the median wall-clock seconds of the epochs after the first (each epoch as
pythae's trainer runs it, from its epoch-begin to its epoch-end callback); nll is -log p(x) in nats from
pythae's `get_nll` with exactly K importance samples per example; negative_elbo is the mean over test
examples of pythae's own loss (summed over pixels, one z sample per example, model in eval mode), which for
these three models with the settings here is the plain -ELBO (no KL warm-up, no beta).
"""

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from binary_images import load_binary_images
from torch import nn

SCALE_FLOOR = 1e-5  # tfvae's floor on softplus scales (tfvae.distributions.SCALE_FLOOR)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("vae", "vamp", "iaf"), required=True)
    parser.add_argument("--train", required=True, help="float32 .npy of shape (N, 28, 28, 1), values 0 or 1")
    parser.add_argument("--test", required=True, help="float32 .npy of shape (N, 28, 28, 1), values 0 or 1")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--latent-dim", type=int, required=True)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--nll-samples", type=int, required=True, help="importance samples per test example")
    parser.add_argument("--num-pseudo-inputs", type=int, default=500, help="VAMP: number_components")
    parser.add_argument("--iaf-steps", type=int, default=2, help="IAF: n_made_blocks")
    parser.add_argument("--iaf-hidden", type=int, default=320, help="IAF: hidden_size (units of each MADE layer)")
    parser.add_argument("--iaf-made-layers", type=int, default=2,
                        help="IAF: n_hidden_in_made, hidden layers in each MADE (pythae's own default is 3)")
    parser.add_argument("--posterior-scale", choices=("log_var", "softplus"), default="log_var",
                        help="how the encoder's second head gives q(z|x)'s spread: a log-variance (pythae's "
                             "convention), or tfvae's scale softplus(raw) + 1e-5 handed to pythae as its log")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nll-examples", type=int, default=None, help="first N test examples (default: all)")
    parser.add_argument("--quiet", action="store_true", help="silence pythae's logs and progress bars (stderr)")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "latent_dim", "hidden", "nll_samples", "num_pseudo_inputs", "iaf_steps",
                 "iaf_hidden", "iaf_made_layers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.learning_rate <= 0:
        parser.error("--learning-rate must be positive")
    if args.nll_examples is not None and args.nll_examples < 1:
        parser.error("--nll-examples must be at least 1")
    return args


def channels_first(images):
    """(N, 28, 28, 1) -> (N, 1, 28, 28), pythae's layout."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def build_model(args):
    from pythae.models import VAE, VAE_IAF, VAMP, VAE_IAF_Config, VAEConfig, VAMPConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    pixels, latent, hidden = 784, args.latent_dim, args.hidden

    class MLPEncoder(BaseEncoder):
        """flatten 784 -> Dense(hidden) ReLU -> Dense(2 * latent) = (mu, log-variance)."""

        def __init__(self):
            BaseEncoder.__init__(self)
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU())
            self.head = nn.Linear(hidden, 2 * latent)

        def forward(self, x):
            mu, raw = self.head(self.body(x)).chunk(2, dim=-1)
            if args.posterior_scale == "softplus":
                log_var = 2.0 * torch.log(nn.functional.softplus(raw) + SCALE_FLOOR)
            else:
                log_var = raw
            return ModelOutput(embedding=mu, log_covariance=log_var)

    class MLPDecoder(BaseDecoder):
        """latent -> Dense(hidden) ReLU -> Dense(784) -> sigmoid: Bernoulli means, shaped (N, 1, 28, 28)."""

        def __init__(self):
            BaseDecoder.__init__(self)
            self.net = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels), nn.Sigmoid())

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z).reshape(-1, 1, 28, 28))

    common = {"input_dim": (1, 28, 28), "latent_dim": latent, "reconstruction_loss": "bce"}
    if args.model == "vae":
        return VAE(VAEConfig(**common), encoder=MLPEncoder(), decoder=MLPDecoder())
    if args.model == "vamp":
        config = VAMPConfig(**common, number_components=args.num_pseudo_inputs, linear_scheduling_steps=0)
        return VAMP(config, encoder=MLPEncoder(), decoder=MLPDecoder())
    config = VAE_IAF_Config(**common, n_made_blocks=args.iaf_steps, n_hidden_in_made=args.iaf_made_layers,
                            hidden_size=args.iaf_hidden)
    return VAE_IAF(config, encoder=MLPEncoder(), decoder=MLPDecoder())


def make_epoch_timer():
    from pythae.trainers.training_callbacks import TrainingCallback

    class EpochTimer(TrainingCallback):
        """Wall-clock seconds of each epoch, from pythae's epoch-begin to its epoch-end callback."""

        def __init__(self):
            self.seconds = []
            self._start = None

        def on_epoch_begin(self, training_config, **kwargs):
            self._start = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def nll_batch_size(samples, largest=1000):
    """pythae's get_nll draws `batch_size` samples when n_samples <= batch_size and
    (n_samples // batch_size) * batch_size otherwise: a batch size dividing K gives exactly K."""
    if samples <= largest:
        return samples
    divisor = max(d for d in range(1, largest + 1) if samples % d == 0)
    return divisor if divisor >= 50 else samples


@torch.no_grad()
def negative_elbo(model, data, batch_size=500):
    """Mean over examples of pythae's forward loss: per example BCE summed over the 784 pixels plus the KL
    term (analytic for the VAE, one-sample log q(z|x) - log p(z) for VAMP and IAF), model in eval mode."""
    from pythae.data.datasets import DatasetOutput

    model.eval()
    total = 0.0
    for start in range(0, len(data), batch_size):
        batch = data[start : start + batch_size]
        output = model(DatasetOutput(data=batch))
        total += float(output.loss) * len(batch)
    return total / len(data)


def quiet_pythae():
    """pythae's INFO logs off, and its progress bars (tqdm, imported by torch before any env var is read)."""
    import functools
    import logging

    from pythae.trainers import training_callbacks

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)
    training_callbacks.tqdm = functools.partial(training_callbacks.tqdm, disable=True)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(2)
    try:
        torch.set_num_interop_threads(2)
    except RuntimeError:
        pass

    train = channels_first(load_binary_images(args.train))
    test = channels_first(load_binary_images(args.test))
    if args.nll_examples is not None:
        test = test[: args.nll_examples]
    test = torch.from_numpy(test)

    # pythae (and its get_nll for VAMP) prints to stdout: all of it goes to stderr (nowhere with --quiet), the
    # JSON line alone to stdout.
    stdout = sys.stdout
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(os.devnull, "w")) if args.quiet else sys.stderr
        stack.enter_context(contextlib.redirect_stdout(sink))
        output_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pythae-peer-"))
        from pythae.pipelines import TrainingPipeline
        from pythae.trainers import BaseTrainerConfig

        if args.quiet:
            quiet_pythae()

        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        model = build_model(args)
        training_config = BaseTrainerConfig(
            output_dir=output_dir,
            num_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            optimizer_cls="Adam",
            seed=args.seed,
            no_cuda=True,
        )
        timer = make_epoch_timer()
        pipeline = TrainingPipeline(model=model, training_config=training_config)
        pipeline(train_data=train, callbacks=[timer])

        # The trainer saves its best-on-train-loss copy to output_dir; evaluate the weights after the last
        # epoch (pipeline.trainer.model), as a Keras fit() leaves them.
        model = pipeline.trainer.model
        model.eval()
        elbo_loss = negative_elbo(model, test)
        with torch.no_grad():
            log_likelihood = model.get_nll(test, n_samples=args.nll_samples,
                                           batch_size=nll_batch_size(args.nll_samples))

    seconds = timer.seconds
    steady = seconds[1:] if len(seconds) > 1 else seconds
    result = {
        "system": "pythae",
        "model": args.model,
        "epochs": args.epochs,
        "seconds_per_epoch": float(statistics.median(steady)),
        "epoch_seconds": [round(s, 4) for s in seconds],
        "nll": -float(log_likelihood),  # get_nll returns the mean log-likelihood (negative); NLL is its opposite
        "negative_elbo": float(elbo_loss),
        "nll_samples": args.nll_samples,
        "torch_threads": torch.get_num_threads(),
        "pythae_version": importlib.metadata.version("pythae"),
        "train_examples": len(train),
        "test_examples": len(test),
        "latent_dim": args.latent_dim,
        "batch_size": args.batch_size,
        "posterior_scale": args.posterior_scale,
    }
    if args.model == "vamp":
        result["num_pseudo_inputs"] = args.num_pseudo_inputs
    if args.model == "iaf":
        result.update(iaf_steps=args.iaf_steps, iaf_hidden=args.iaf_hidden, iaf_made_layers=args.iaf_made_layers)
    if not all(math.isfinite(result[k]) for k in ("nll", "negative_elbo")):
        print(f"non-finite result: {result}", file=sys.stderr)
    print(json.dumps(result), file=stdout, flush=True)


if __name__ == "__main__":
    main()
