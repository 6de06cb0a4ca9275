"""A JAX/Flax training loop of the benchmark's MLP VAE (784-400-20, Bernoulli, Adam 1e-3), with one
`jax.jit` call per step or `--scan N` steps per compiled call through `jax.lax.scan`.

    python jax_loop.py DATA.npy BATCH EPOCHS [--scan N]   -> prints {"examples_per_second": ...}
"""

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn


class VAE(nn.Module):
    hidden: int = 400
    latent: int = 20
    pixels: int = 784

    @nn.compact
    def __call__(self, x, key):
        params = nn.Dense(2 * self.latent)(nn.relu(nn.Dense(self.hidden)(x)))
        loc, raw_scale = jnp.split(params, 2, axis=-1)
        scale = jax.nn.softplus(raw_scale) + 1e-5
        z = loc + scale * jax.random.normal(key, loc.shape)
        logits = nn.Dense(self.pixels)(nn.relu(nn.Dense(self.hidden)(z)))
        reconstruction = optax.sigmoid_binary_cross_entropy(logits, x).sum(-1)
        kl = 0.5 * (loc**2 + scale**2 - 1).sum(-1) - jnp.log(scale).sum(-1)
        return (reconstruction + kl).mean()


def main(path, batch_size, epochs, scan):
    data = jnp.asarray(np.load(path).reshape(-1, 784).astype(np.float32))
    model = VAE()
    key = jax.random.PRNGKey(0)
    params = model.init(key, data[:batch_size], key)
    optimizer = optax.adam(1e-3)
    state = (params, optimizer.init(params), key)

    def step(state, batch):
        params, opt_state, key = state
        key, noise = jax.random.split(key)
        loss, grads = jax.value_and_grad(lambda p: model.apply(p, batch, noise))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), loss

    run = jax.jit(lambda state, batches: jax.lax.scan(step, state, batches)) if scan > 1 else jax.jit(step)
    steps = (len(data) // batch_size) // scan * scan
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = jnp.asarray(rng.permutation(len(data))[: steps * batch_size])
        batches = data[order].reshape(steps // scan, scan, batch_size, 784) if scan > 1 else data[order].reshape(steps, batch_size, 784)
        for batch in batches:
            state, loss = run(state, batch)
        jax.block_until_ready(state)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"examples_per_second": steps * batch_size / float(np.median(seconds[1:])), "loss": float(np.mean(loss))}))


if __name__ == "__main__":
    scan = int(sys.argv[sys.argv.index("--scan") + 1]) if "--scan" in sys.argv else 1
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), scan)
