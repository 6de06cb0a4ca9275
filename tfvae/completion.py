"""Data completion with a trained VAE: the missing pixels x_m of an image predicted from its observed ones x_o.

Three methods estimate E[x_m | x_o] (and draw from p(x_m | x_o)):
  "importance": self-normalized importance sampling with q(z | x̃) as proposal (as in MIWAE, Mattei &
      Frellsen 2019), x̃ the image with its missing pixels filled by a few reconstructions (`proposal_input`),
      or q(z | x_o) itself for models whose encoder takes missing pixels (`marks_missing`);
  "pseudo_gibbs": alternate z ~ q(z | x̂) and x_m ~ p(x_m | z) (Rezende et al. 2014);
  "metropolis_within_gibbs": the same, with z accepted by an independent Metropolis-Hastings step
      that targets p(z | x̂) (Mattei & Frellsen 2018), so the chain has p(x_m | x_o) as its stationary law.
The chains report the Rao-Blackwellized mean E[x_m | z] averaged over their second half.
Every function takes a batch: `images` and `observed` (1 where known) of shape (B, H, W, C),
`encode` (images -> q(z|x)), `decode` (z -> p(x|z)), the prior and an int32 stateless seed.
"""

import math

import tensorflow as tf

from tfvae.distributions import RANDOM_ALGORITHM, observed_log_prob, point, sample
from tfvae.names import COMPLETION_METHODS as METHODS

# Reconstructions that refine the proposal's input before importance sampling (`proposal_input`).
PROPOSAL_ITERATIONS = 10


def check_method(method):
    """`method` if it is one of `METHODS`, else a ValueError naming them."""
    if method not in METHODS:
        raise ValueError(f"Unknown completion method {method!r}. Expected one of {', '.join(METHODS)}.")
    return method


def _filled(images, observed, values):
    """`images` where observed, `values` elsewhere (NaN in missing pixels never leaks through)."""
    return tf.where(observed > 0, images, values)


def proposal_input(images, observed, encode, decode, iterations=PROPOSAL_ITERATIONS):
    """The image q(z | ·) is given as proposal: missing pixels zero-filled, then replaced `iterations`
    times by the reconstruction mean of the current fill (a deterministic pseudo-Gibbs). A proposal
    centred where p(z | x_o) is keeps the importance weights far less degenerate than zero-filling alone."""
    filled = _filled(images, observed, 0.0)
    for _ in range(iterations):
        filled = _filled(images, observed, decode(point(encode(filled))).mean())
    return filled


def _proposal(images, observed, encode, decode, marks_missing):
    """q(z | ·) as importance proposal: given x_o alone (NaN elsewhere) when the encoder was trained on
    incomplete data (`marks_missing`), which for such models completes more accurately and bounds
    log p(x_o) more tightly than the fill-in; else given `proposal_input`'s fill."""
    if marks_missing:
        return encode(_filled(images, observed, float("nan")))
    return encode(proposal_input(images, observed, encode, decode))


def _seeds(seed, count):
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def importance(images, observed, encode, decode, prior, seed, num_samples, chunk_size, draws=0, marks_missing=False):
    """(E[x | x_o] with observed pixels kept, `draws` completions resampled by importance weight (draws, B, H, W, C)).

    Draws are chosen with the Gumbel-max trick chunk by chunk, so memory stays flat in `num_samples`.
    """
    images = _filled(images, observed, 0.0)  # missing pixels may hold NaN
    proposal = _proposal(images, observed, encode, decode, marks_missing)
    batch = tf.shape(images)[0]
    running_max = tf.fill([batch], -float("inf"))
    running_sum = tf.zeros([batch])
    weighted_mean = tf.zeros_like(images)
    best_score = tf.fill([max(draws, 1), batch], -float("inf"))  # loop variables exist even without draws
    best = tf.zeros(tf.concat([[max(draws, 1)], tf.shape(images)], 0))
    for chunk in tf.range(math.ceil(num_samples / chunk_size)):
        chunk_seed, gumbel_seed, pixel_seed = _seeds(
            tf.random.experimental.stateless_fold_in(seed, chunk, alg=RANDOM_ALGORITHM), 3
        )
        z = sample(proposal, chunk_size, chunk_seed)  # (chunk, B, latent)
        likelihood = decode(z)
        log_weights = observed_log_prob(likelihood, images, observed) + prior.log_prob(z) - proposal.log_prob(z)
        index = chunk * chunk_size + tf.range(chunk_size)
        log_weights = tf.where((index < num_samples)[:, None], log_weights, -float("inf"))  # (chunk, B)
        new_max = tf.maximum(running_max, tf.reduce_max(log_weights, axis=0))
        rescale, weights = tf.exp(running_max - new_max), tf.exp(log_weights - new_max)
        running_sum = running_sum * rescale + tf.reduce_sum(weights, axis=0)
        weighted_mean = weighted_mean * rescale[:, None, None, None] + tf.einsum("kb,kbhwc->bhwc", weights, likelihood.mean())
        running_max = new_max
        if draws:
            gumbel = -tf.math.log(-tf.math.log(
                tf.random.stateless_uniform([chunk_size, draws, batch], gumbel_seed, minval=1e-12, maxval=1.0)
            ))
            scores = log_weights[:, None, :] + gumbel  # (chunk, draws, B)
            chosen = tf.argmax(scores, axis=0, output_type=tf.int32)  # (draws, B)
            chosen_score = tf.reduce_max(scores, axis=0)
            pixels = likelihood.distribution.sample(seed=pixel_seed)  # (chunk, B, H, W, C)
            candidates = tf.gather(tf.transpose(pixels, [1, 0, 2, 3, 4]), tf.transpose(chosen), batch_dims=1)
            candidates = tf.transpose(candidates, [1, 0, 2, 3, 4])  # (draws, B, H, W, C)
            better = chosen_score > best_score
            best = tf.where(better[:, :, None, None, None], candidates, best)
            best_score = tf.maximum(best_score, chosen_score)
    mean = _filled(images, observed, weighted_mean / running_sum[:, None, None, None])
    return mean, (_filled(images, observed, best) if draws else None)


def markov_chain(images, observed, encode, decode, prior, seed, num_samples, metropolis, draws=0):
    """(E[x | x_o] from the chain's second half, `draws` states x̂ spread evenly over that half).

    `metropolis` False is pseudo-Gibbs; True accepts each proposed z with the
    Metropolis-Hastings ratio of p(x̂, z)/q(z | x̂) between proposal and current z.
    """
    images = _filled(images, observed, 0.0)  # missing pixels may hold NaN
    burn_in = num_samples // 2
    kept = num_samples - burn_in
    spacing = max(1, kept // max(draws, 1))
    start_seed, loop_seed = _seeds(seed, 2)
    current = proposal_input(images, observed, encode, decode)
    z = sample(encode(current), 1, start_seed)[0]
    total = tf.zeros_like(images)
    states = tf.zeros(tf.concat([[max(draws, 1)], tf.shape(images)], 0))
    for step in tf.range(num_samples):
        propose_seed, accept_seed, pixel_seed = _seeds(
            tf.random.experimental.stateless_fold_in(loop_seed, step, alg=RANDOM_ALGORITHM), 3
        )
        posterior = encode(current)
        proposed = sample(posterior, 1, propose_seed)[0]
        if metropolis:
            both = tf.stack([proposed, z])  # (2, B, latent)
            log_weights = decode(both).log_prob(current) + prior.log_prob(both) - posterior.log_prob(both)
            accept = tf.math.log(tf.random.stateless_uniform(tf.shape(z)[:1], accept_seed)) < log_weights[0] - log_weights[1]
            z = tf.where(accept[:, None], proposed, z)
        else:
            z = proposed
        likelihood = decode(z)
        current = _filled(images, observed, likelihood.distribution.sample(seed=pixel_seed))
        after_burn_in = step >= burn_in
        total += tf.cast(after_burn_in, tf.float32) * likelihood.mean()
        if draws:
            slot = (step - burn_in) // spacing
            keep = after_burn_in & ((step - burn_in) % spacing == 0) & (slot < draws)
            states = tf.where((tf.equal(tf.range(draws), slot) & keep)[:, None, None, None, None], current, states)
    mean = _filled(images, observed, total / kept)
    return mean, (states if draws else None)


def observed_log_likelihood(images, observed, encode, decode, prior, seed, num_samples, chunk_size, iwae_bound,
                            marks_missing=False):
    """log p(x_o), importance-sampled with `num_samples` draws from the proposal `_proposal`, scoring the observed
    pixels only: the missing pixels of `images` may hold anything."""
    return iwae_bound(images, _proposal(images, observed, encode, decode, marks_missing), decode, prior, seed,
                      num_samples, chunk_size, observed=observed)


def log_likelihoods(images, observed, encode, decode, prior, seed, num_samples, chunk_size, iwae_bound,
                    marks_missing=False):
    """(log p(x), log p(x_o)), each importance-sampled with `num_samples` draws; their difference is log p(x_m | x_o).

    `iwae_bound` is `tfvae.objectives.iwae_bound`; log p(x_o) is `observed_log_likelihood`.
    """
    full_seed, observed_seed = _seeds(seed, 2)
    log_px = iwae_bound(images, encode(images), decode, prior, full_seed, num_samples, chunk_size)
    log_pxo = observed_log_likelihood(images, observed, encode, decode, prior, observed_seed, num_samples, chunk_size,
                                      iwae_bound, marks_missing)
    return log_px, log_pxo
