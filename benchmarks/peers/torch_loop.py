"""A plain eager PyTorch training loop of the benchmark's MLP VAE (784-400-20, Bernoulli, Adam 1e-3).

    python torch_loop.py DATA.npy BATCH EPOCHS   -> prints {"examples_per_second": ...} (epochs after the first)
"""

import json
import sys
import time

import numpy as np
import torch
from torch import nn


class VAE(nn.Module):
    def __init__(self, pixels=784, hidden=400, latent=20):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels))

    def loss(self, x):
        loc, raw_scale = self.encoder(x).chunk(2, dim=-1)
        scale = nn.functional.softplus(raw_scale) + 1e-5
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        reconstruction = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (loc**2 + scale**2 - 1).sum(-1) - torch.log(scale).sum(-1)
        return (reconstruction + kl).mean()


def main(path, batch_size, epochs):
    torch.manual_seed(0)
    data = torch.from_numpy(np.load(path).reshape(-1, 784).astype(np.float32))
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = len(data) // batch_size
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(data))
        for step in range(steps):
            batch = data[order[step * batch_size : (step + 1) * batch_size]]
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(batch)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"examples_per_second": steps * batch_size / float(np.median(seconds[1:])), "loss": float(loss)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
