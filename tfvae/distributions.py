"""What the rest of tfvae asks of a latent distribution, answered once for every prior and posterior.

Priors (`tfvae.priors`), posteriors (`tfvae.posteriors`) and likelihoods (`tfvae.likelihoods`) return `tfd`
distributions; these functions draw from them, hold their parameters fixed, measure KL between them and
summarise them, through TensorFlow Probability's own protocols (bijectors, composite tensors, the KL
registry), so no caller needs to know which part made a distribution.
"""

import logging

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
logger = logging.getLogger("tfvae")

# Keeps every scale strictly positive after softplus (as in TFP's VAE example).
SCALE_FLOOR = 1e-5

# Random numbers for the reparameterization noise. TensorFlow's default, "auto_select", lets each device
# pick and ran a small VAE's whole training step 1.3x slower than Philox under XLA on CPU; Philox is fast and
# device-independent.
RANDOM_ALGORITHM = "philox"

# softplus⁻¹(1): a learned scale's raw value at which σ starts at 1.
UNIT_RAW_SCALE = 0.5413

# Draws behind the moments of a distribution that has no closed-form mean or standard deviation.
MOMENT_SAMPLES = 256


def sample(distribution, num_samples, seed):
    """`num_samples` reparameterized draws, shape (num_samples, *batch, *event), differentiable in the parameters.

    Gaussians (`tfd.MultivariateNormalDiag`, `...TriL`: z = μ + L·ε) draw ε with Philox; a transformed
    distribution (a flow) pushes its base's draws through its bijector; anything else uses its own sampler.
    """
    if isinstance(distribution, tfd.MultivariateNormalLinearOperator):
        shape = tf.concat([[num_samples], distribution.batch_shape_tensor(), distribution.event_shape_tensor()], axis=0)
        return distribution.bijector.forward(tf.random.stateless_normal(shape, seed=seed, alg=RANDOM_ALGORITHM))
    if isinstance(distribution, tfd.TransformedDistribution):
        return distribution.bijector.forward(sample(distribution.distribution, num_samples, seed))
    return distribution.sample(num_samples, seed=seed)


def point(distribution):
    """The point code of a latent distribution (plots, classifiers, reconstructions): its mean, or for a
    transformation of a distribution without a closed-form mean (a flow), the image of its base's point."""
    try:
        return distribution.mean()
    except NotImplementedError:
        return distribution.bijector.forward(point(distribution.distribution))


def stopped(distribution):
    """The same distribution with every parameter held constant: log-densities then pass gradients through
    their argument only (the doubly-reparameterized and sticking-the-landing estimators need this). A
    distribution that is not a composite tensor (a chain of layers, `tfvae.hierarchy`) answers with its own
    `stopped()`."""
    if hasattr(distribution, "stopped"):
        return distribution.stopped()
    return tf.nest.map_structure(tf.stop_gradient, distribution, expand_composites=True)


def has_analytic_kl(posterior, prior):
    """Whether TensorFlow Probability has KL(posterior || prior) in closed form for this pair."""
    try:
        tfd.kl_divergence(posterior, prior)
    except NotImplementedError:
        return False
    return True


def choose_kl(kl, posterior, prior):
    """"analytic" or "monte_carlo" for `kl` ("auto", "analytic", "monte_carlo") and this pair, or a clear error."""
    analytic = has_analytic_kl(posterior, prior)
    pair = f"{type(posterior).__name__} posterior and {type(prior).__name__} prior"
    if kl == "analytic" and not analytic:
        raise ValueError(
            f"KL(q || p) has no closed form for a {pair}. Use kl='monte_carlo' (or 'auto', which chooses it), "
            "or a prior and posterior with one (e.g. Gaussians)."
        )
    if kl == "auto":
        logger.info("KL(q || p) %s for a %s.", "in closed form" if analytic else "by Monte Carlo (no closed form)", pair)
        return "analytic" if analytic else "monte_carlo"
    return kl


def kl_divergence(posterior, prior, z, estimator):
    """KL(q || p) per example: in closed form ("analytic"), or ("monte_carlo") the mean of log q(z) − log p(z)
    over the samples z ~ q (shape (K, *batch, latent)) the bound itself uses."""
    if estimator == "analytic":
        return tfd.kl_divergence(posterior, prior)
    return tf.reduce_mean(posterior.log_prob(z) - prior.log_prob(z), axis=0)


def draw(distribution, n, seed):
    """`n` latent codes (n, latent): one from each member of a distribution whose batch holds `n` (a prior given
    each example's label), or `n` from a distribution without a batch."""
    if distribution.batch_shape.rank:
        return sample(distribution, 1, seed)[0]
    return sample(distribution, n, seed)


def marginals(distribution, seed=(0, 0)):
    """The 1-d marginal of each latent dimension, a distribution of batch shape (*batch, latent): exact for
    Gaussians and mixtures of them (a mixture of the components' marginals), moment-matched from
    `MOMENT_SAMPLES` fixed-seed draws for a distribution without closed-form moments (a flow)."""
    if isinstance(distribution, tfd.MixtureSameFamily):
        components = marginals(distribution.components_distribution, seed)  # (*batch, K, latent)
        move = lambda t: tf.experimental.numpy.moveaxis(t, -2, -1)  # components last: (*batch, latent, K)
        logits = distribution.mixture_distribution.logits_parameter()[..., None, :]  # (*batch, 1, K)
        return tfd.MixtureSameFamily(
            tfd.Categorical(logits=tf.broadcast_to(logits, tf.shape(move(components.mean())))),
            tfd.Normal(move(components.mean()), move(components.stddev())),
        )
    try:
        return tfd.Normal(distribution.mean(), distribution.stddev())
    except NotImplementedError:
        draws = sample(distribution, MOMENT_SAMPLES, tf.constant(seed, tf.int32))
        mean, variance = tf.nn.moments(draws, axes=[0])
        return tfd.Normal(mean, tf.sqrt(variance) + SCALE_FLOOR)


def marginal_kl(posterior_marginals, prior_marginals, num_samples=64, seed=(0, 0)):
    """KL(q(z_d|x) || p(z_d)) for each latent dimension d, shape (*batch, latent), between 1-d marginals:
    closed form where TensorFlow Probability has it, else Monte Carlo over `num_samples` fixed-seed draws."""
    try:
        return tfd.kl_divergence(posterior_marginals, prior_marginals)
    except NotImplementedError:
        draws = posterior_marginals.sample(num_samples, seed=tf.constant(seed, tf.int32))
        return tf.reduce_mean(posterior_marginals.log_prob(draws) - prior_marginals.log_prob(draws), axis=0)


def observed_log_prob(likelihood, images, observed):
    """log p(x_o | z): the likelihood's per-pixel log-probabilities summed over observed pixels, shape (..., B).

    `observed` is 1 (or True) where a pixel is known; missing pixels may hold anything, NaN included.
    """
    known = tf.cast(observed, tf.bool)
    per_pixel = likelihood.distribution.log_prob(tf.where(known, images, tf.zeros_like(images)))
    return tf.reduce_sum(tf.where(known, per_pixel, tf.zeros_like(per_pixel)), axis=[-3, -2, -1])


def image_log_prob(likelihood, images, observed=None):
    """log p(x|z) over every pixel, or over the observed ones (`observed_log_prob`) when a mask is given."""
    return likelihood.log_prob(images) if observed is None else observed_log_prob(likelihood, images, observed)
