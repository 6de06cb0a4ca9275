"""Pyro's ReweightedWakeSleep (pyro-ppl 1.9.2, PyTorch) training tfvae's sigmoid belief network, as a Pyro user would.

tfvae's Helmholtz-machine benchmark (benchmarks/helmholtz.py) runs this script as a subprocess with the python
of its own virtual environment (benchmarks/.pyro-venv, from benchmarks/peers/pyro_requirements.txt) and reads
the one JSON line it prints last on stdout (everything else goes to stderr), to put Pyro's epoch time and
importance-sampled NLL next to tfvae's "binary 200-200, RWS k=K" rows in one run.

The model is tfvae's two-layer sigmoid belief network with linear conditionals (no hidden units), over 784
binary pixels x and binary layers h1 (D1 units) and h2 (D2 units), --latent-dims D1,D2:
    generative   p(h2) = Bernoulli(logits=t), t learned, initially 0;  p(h1|h2) = Bernoulli(logits=h2 W21 + c1);
                 p(x|h1) = Bernoulli(logits=h1 Wx + bx)
    recognition  q(h1|x) = Bernoulli(logits=x U1 + u1);  q(h2|h1) = Bernoulli(logits=h1 U2 + u2)
with Keras's initialization (Glorot-uniform weights, zero biases). It is a Pyro model (pyro.module, a
pyro.plate over the examples, pyro.sample sites "h2", "h1" and the observed "x", each Bernoulli(...).to_event(1))
and a guide with the recognition network (sites "h1", "h2"). Training is pyro.infer.SVI with
pyro.infer.ReweightedWakeSleep(num_particles=K, insomnia=--insomnia, model_has_params=True,
vectorize_particles=True, max_plate_nesting=1) and pyro.optim.Adam (Keras's defaults: betas 0.9/0.999,
eps 1e-7), shuffled mini-batches of --batch-size every epoch (the last one smaller if B does not divide N).

    python pyro_rws.py --train TRAIN.npy --test TEST.npy --epochs E --batch-size B --learning-rate LR
        --latent-dims 200,200 --num-samples K --nll-samples S [--nll-examples N] [--seed S]
        [--insomnia 1.0] [--weighting {example,batch}] [--threads T] [--quiet]
    -> {"system": "pyro", "model": "rws", "num_samples": K, "seconds_per_epoch": ..., "nll": ...,
        "negative_iwae_k": ..., ...}

Importance weights. Pyro's RWS sums every sample site's log-probability over all of a trace's plates before
weighting the K particles (pyro/infer/rws.py: `site["log_prob"].reshape(self.num_particles, -1).sum(-1)`, and
its docstring: "Mini-batch training is not supported yet"), so on a plate of B examples its K particles are K
joint draws of the whole batch, self-normalized together. --weighting picks how the script feeds it a batch:
  example  (default) Pyro's RWS once per example of the mini-batch (a plate of one), its backward() adding each
           example's gradients into the parameters' .grad, then one Adam step for the batch: per-example weights,
           the bound log (1/K) sum_k p(x, h_k)/q(h_k|x) of each example, as Bornschein & Bengio and tfvae train.
  batch    Pyro's RWS once on a plate of the B examples (no subsample scaling), its weights over the batch's joint:
           what the class does to a mini-batch as it stands; a looser bound, near-one-hot weights.
Either way the gradients are divided by the number of examples before the step, so the loss is per example
(the mean over the batch, as a Keras loss) and not scaled by the data-set size; with --insomnia < 1 the guide
gets Pyro's sleep phase (K dreams (h, x) ~ p per example) mixed in as insomnia * wake + (1 - insomnia) * sleep.

TRAIN.npy and TEST.npy hold float32 (N, 28, 28, 1) arrays of exactly 0s and 1s (already binarized); they are
flattened to (N, 784). The figures: seconds_per_epoch is the median wall-clock seconds of the epochs after the
first (of the only one if E = 1), each epoch from its shuffle to its last optimizer step; nll is the mean over
the first N test images (all if --nll-examples is not given) of -log p(x) in nats, estimated by importance
sampling with the guide as proposal and exactly S samples per image:
    -log p(x) ~= -(logsumexp_s [log p(x, h1_s, h2_s) - log q(h1_s, h2_s | x)] - log S),  (h1_s, h2_s) ~ q(.|x),
computed in torch from the trained parameters in chunks (samples and images) so memory stays small;
negative_iwae_k is the same estimator with K samples (the negative of the training bound, per example, on those
N images), and epoch_theta_loss the mean per example of Pyro's wake-theta loss over each epoch's batches.
"""

import argparse
import importlib.metadata
import json
import math
import statistics
import sys
import time

import numpy as np
import torch
from binary_images import load_binary_images
from torch import nn

PIXELS = 784
KERAS_ADAM_EPSILON = 1e-7  # keras.optimizers.Adam's default (torch's is 1e-8)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="float32 .npy of shape (N, 28, 28, 1), values 0 or 1")
    parser.add_argument("--test", required=True, help="float32 .npy of shape (N, 28, 28, 1), values 0 or 1")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--latent-dims", default="200,200", help="D1,D2: units of h1 (next to x) and h2 (top)")
    parser.add_argument("--num-samples", type=int, required=True, help="K, RWS's num_particles (at least 2)")
    parser.add_argument("--nll-samples", type=int, required=True, help="importance samples per test image")
    parser.add_argument("--nll-examples", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--insomnia", type=float, default=1.0,
                        help="RWS's insomnia: 1 the wake-phase recognition update (tfvae's recognition_update="
                             "'wake'), 0 the sleep phase, 0.5 half of each (tfvae's 'both')")
    parser.add_argument("--weighting", choices=("example", "batch"), default="example",
                        help="importance weights per example (RWS called once per example) or over the "
                             "mini-batch's joint (RWS called once on a plate of the batch)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch log lines on stderr")
    args = parser.parse_args(argv)
    try:
        args.latent_dims = tuple(int(d) for d in args.latent_dims.split(","))
    except ValueError:
        parser.error(f"--latent-dims must be two comma-separated integers, got {args.latent_dims!r}")
    if len(args.latent_dims) != 2 or min(args.latent_dims) < 1:
        parser.error(f"--latent-dims must be two positive integers D1,D2, got {args.latent_dims}")
    for name in ("epochs", "batch_size", "nll_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.num_samples < 2:
        parser.error("--num-samples must be at least 2 (ReweightedWakeSleep asserts num_particles > 1)")
    if args.learning_rate <= 0:
        parser.error("--learning-rate must be positive")
    if not 0.0 <= args.insomnia <= 1.0:
        parser.error("--insomnia must be in [0, 1]")
    if args.nll_examples is not None and args.nll_examples < 1:
        parser.error("--nll-examples must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def flat(images):
    """(N, 28, 28, 1) -> (N, 784), the belief network's visible units."""
    return np.ascontiguousarray(images.reshape(len(images), -1))


def dense(inputs, units):
    """A linear layer as Keras builds a Dense one: Glorot-uniform kernel, zero bias."""
    layer = nn.Linear(inputs, units)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Generative(nn.Module):
    """p(h2) p(h1|h2) p(x|h1): top logits t (initially 0, Bernoulli(1/2)), then two linear-sigmoid links."""

    def __init__(self, latent_dims, pixels=PIXELS):
        super().__init__()
        d1, d2 = latent_dims
        self.top = nn.Parameter(torch.zeros(d2))
        self.down = dense(d2, d1)  # h2 -> logits of h1 (W21, c1)
        self.out = dense(d1, pixels)  # h1 -> logits of x (Wx, bx)


class Recognition(nn.Module):
    """q(h1|x) q(h2|h1): two linear-sigmoid links."""

    def __init__(self, latent_dims, pixels=PIXELS):
        super().__init__()
        d1, d2 = latent_dims
        self.up1 = dense(pixels, d1)  # x -> logits of h1 (U1, u1)
        self.up2 = dense(d1, d2)  # h1 -> logits of h2 (U2, u2)


def make_model_and_guide(generative, recognition):
    """The Pyro model and guide over a batch x of shape (B, pixels). Both take `observations` (Pyro's RWS passes
    the dreamed x there in its sleep phase, the model's "x" site unconditioned)."""
    import pyro
    import pyro.distributions as dist

    def model(x, observations=None):
        pyro.module("generative", generative)
        with pyro.plate("data", x.shape[0]):
            h2 = pyro.sample("h2", dist.Bernoulli(logits=generative.top.expand(x.shape[0], -1)).to_event(1))
            h1 = pyro.sample("h1", dist.Bernoulli(logits=generative.down(h2)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=generative.out(h1)).to_event(1), obs=x)

    def guide(x, observations=None):
        pyro.module("recognition", recognition)
        images = x if observations is None else observations["x"]
        with pyro.plate("data", x.shape[0]):
            h1 = pyro.sample("h1", dist.Bernoulli(logits=recognition.up1(images)).to_event(1))
            pyro.sample("h2", dist.Bernoulli(logits=recognition.up2(h1)).to_event(1))

    return model, guide


class PerExampleMean:
    """The loss SVI steps on: Pyro's ReweightedWakeSleep on each example ("example") or on the whole mini-batch
    ("batch"), its loss_and_grads backward() accumulating into .grad; the gradients (and the returned losses)
    are then divided by the batch size, so one step follows the mean per example, as a Keras loss does."""

    def __init__(self, rws, weighting):
        self.rws = rws
        self.weighting = weighting

    def loss_and_grads(self, model, guide, x, **kwargs):
        import pyro

        if self.weighting == "batch":
            theta, phi = self.rws.loss_and_grads(model, guide, x, **kwargs)
        else:
            theta = phi = 0.0
            for index in range(x.shape[0]):
                theta_one, phi_one = self.rws.loss_and_grads(model, guide, x[index : index + 1], **kwargs)
                theta, phi = theta + theta_one, phi + phi_one
        count = x.shape[0]
        for param in pyro.get_param_store().values():
            param = param.unconstrained()
            if param.grad is not None:
                param.grad.div_(count)
        return theta / count, phi / count

    def loss(self, model, guide, x, **kwargs):
        theta, phi = self.rws.loss(model, guide, x, **kwargs)
        return float(theta) / x.shape[0], float(phi) / x.shape[0]


def bernoulli_log_prob(logits, values):
    """sum over the last axis of log Bernoulli(values; logits), as torch's Bernoulli(logits).log_prob."""
    logits, values = torch.broadcast_tensors(logits, values)
    return -nn.functional.binary_cross_entropy_with_logits(logits, values, reduction="none").sum(-1)


@torch.no_grad()
def log_weights(generative, recognition, x, samples, generator):
    """log p(x, h1, h2) - log q(h1, h2 | x) for `samples` draws (h1, h2) ~ q(.|x) per image: (samples, n)."""
    logits1 = recognition.up1(x).expand(samples, -1, -1)  # (S, n, D1)
    h1 = torch.bernoulli(torch.sigmoid(logits1), generator=generator)
    logits2 = recognition.up2(h1)
    h2 = torch.bernoulli(torch.sigmoid(logits2), generator=generator)
    log_q = bernoulli_log_prob(logits1, h1) + bernoulli_log_prob(logits2, h2)
    log_p = (bernoulli_log_prob(generative.top, h2) + bernoulli_log_prob(generative.down(h2), h1)
             + bernoulli_log_prob(generative.out(h1), x))
    return log_p - log_q


@torch.no_grad()
def negative_log_likelihood(generative, recognition, images, samples, seed, image_chunk=100, sample_chunk=None):
    """Per image -(logsumexp_s log w_s - log S) with exactly `samples` draws from the guide, drawn `sample_chunk`
    at a time and reduced by a running logsumexp (memory ~ sample_chunk * image_chunk * pixels floats)."""
    generator = torch.Generator().manual_seed(seed)
    if sample_chunk is None:
        sample_chunk = max(1, min(samples, 20000 // image_chunk))
    results = []
    for start in range(0, len(images), image_chunk):
        x = images[start : start + image_chunk]
        total = torch.full((len(x),), -math.inf, dtype=torch.float64)
        drawn = 0
        while drawn < samples:
            count = min(sample_chunk, samples - drawn)
            chunk = torch.logsumexp(log_weights(generative, recognition, x, count, generator).double(), dim=0)
            total = torch.logaddexp(total, chunk)
            drawn += count
        results.append(-(total - math.log(samples)))
    return torch.cat(results)


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    import pyro
    from pyro.infer import SVI, ReweightedWakeSleep
    from pyro.optim import Adam

    train = torch.from_numpy(flat(load_binary_images(args.train)))
    test = flat(load_binary_images(args.test))
    if args.nll_examples is not None:
        test = test[: args.nll_examples]
    test = torch.from_numpy(test)

    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)  # seeds torch, numpy and random
    generative, recognition = Generative(args.latent_dims), Recognition(args.latent_dims)
    model, guide = make_model_and_guide(generative, recognition)
    rws = ReweightedWakeSleep(num_particles=args.num_samples, insomnia=args.insomnia, model_has_params=True,
                              vectorize_particles=True, max_plate_nesting=1)
    per_example = PerExampleMean(rws, args.weighting)
    svi = SVI(model, guide, Adam({"lr": args.learning_rate, "eps": KERAS_ADAM_EPSILON}),
              loss=per_example.loss, loss_and_grads=per_example.loss_and_grads)

    shuffle = np.random.default_rng(args.seed)
    seconds, theta_losses = [], []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = torch.from_numpy(shuffle.permutation(len(train)))
        theta_sum = 0.0
        for first in range(0, len(train), args.batch_size):
            batch = train[order[first : first + args.batch_size]]
            theta, _ = svi.step(batch)
            theta_sum += theta * len(batch)
        seconds.append(time.perf_counter() - start)
        theta_losses.append(theta_sum / len(train))
        if not args.quiet:
            print(f"epoch {epoch + 1}/{args.epochs}: {seconds[-1]:.1f} s, wake-theta loss per example "
                  f"{theta_losses[-1]:.2f}", file=sys.stderr, flush=True)

    generative.eval(), recognition.eval()
    nll = negative_log_likelihood(generative, recognition, test, args.nll_samples, seed=args.seed + 1)
    bound = negative_log_likelihood(generative, recognition, test, args.num_samples, seed=args.seed + 2)

    steady = seconds[1:] if len(seconds) > 1 else seconds
    result = {
        "system": "pyro",
        "model": "rws",
        "num_samples": args.num_samples,
        "epochs": args.epochs,
        "seconds_per_epoch": float(statistics.median(steady)),
        "epoch_seconds": [round(s, 4) for s in seconds],
        "nll": float(nll.mean()),
        "negative_iwae_k": float(bound.mean()),
        "nll_samples": args.nll_samples,
        "epoch_theta_loss": [round(loss, 4) for loss in theta_losses],
        "weighting": args.weighting,
        "insomnia": args.insomnia,
        "latent_dims": list(args.latent_dims),
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "train_examples": len(train),
        "test_examples": len(test),
        "torch_threads": torch.get_num_threads(),
        "pyro_version": importlib.metadata.version("pyro-ppl"),
        "torch_version": torch.__version__,
    }
    if not all(math.isfinite(result[k]) for k in ("nll", "negative_iwae_k")):
        print(f"non-finite result: {result}", file=sys.stderr)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
