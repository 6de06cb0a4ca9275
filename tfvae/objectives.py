"""Training objectives and their gradient estimators, written once for every model.

An objective is a lower bound on log p(x) estimated from K draws z_k ~ q(z|x):
  "elbo": (1/K) Σ_k log p(x|z_k) − KL(q || p)           (Kingma & Welling 2013; KL analytic or Monte-Carlo)
  "iwae": log (1/K) Σ_k p(x, z_k) / q(z_k|x)            (Burda et al. 2015)
A gradient estimator (named as `tfp.vi.GradientEstimators` names them) decides how
the bound's gradient is estimated; each returns a surrogate "loss" whose value is
−bound and whose gradient is the estimator's:
  "reparameterization"      z = μ + σ·ε, differentiated through (the default);
  "score_function"          REINFORCE for the encoder, with a running-mean baseline;
  "doubly_reparameterized"  DReG for "iwae" (Tucker et al. 2018); "sticking the landing"
                            for "elbo" (Roeder et al. 2017);
  "vimco"                   "iwae" with per-sample leave-one-out baselines (Mnih & Rezende 2016).

Every function takes the posterior q(z|x) (any `tfd` distribution with batch shape (B,)),
`decode` (z -> p(x|z)), the prior (any `tfd` distribution over z), an int32 stateless `seed`
of shape [2], and returns per-example values in nats; what they ask of the distributions
(draws, a stopped copy, KL) is answered by `tfvae.distributions` for every kind. With an `observed` mask (1 where a pixel is known) the
likelihood counts the observed pixels only, so images with missing pixels give bounds
on log p(x_o) (as in MIWAE, Mattei & Frellsen 2019). Models pass their networks in, so conditional models
(which decode with labels) share every line here.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import names
from tfvae.distributions import RANDOM_ALGORITHM, draw, image_log_prob, kl_divergence, sample, stopped
from tfvae.names import WAKE_SLEEP

tfd = tfp.distributions

# Estimators that differentiate through z = μ + σ·ε and so need a reparameterizable posterior.
PATHWISE = ("reparameterization", "doubly_reparameterized")

# Weight of the newest batch in the score-function estimator's running-mean baseline.
BASELINE_UPDATE = 0.1


def check_objective(objective, gradient_estimator, num_samples):
    """Returns (objective, estimator name), accepting `tfp.vi.GradientEstimators` members too; raises on bad pairs."""
    if isinstance(gradient_estimator, tfp.vi.GradientEstimators):
        gradient_estimator = gradient_estimator.name.lower()
    return names.check_objective(objective, gradient_estimator, num_samples)


def reparameterizable(posterior):
    """Whether samples of `posterior` are differentiable in its parameters (Gaussians, flows; not binary codes), as the
    pathwise estimators need."""
    return posterior.reparameterization_type == tfd.FULLY_REPARAMETERIZED


def check_reparameterizable(posterior, gradient_estimator):
    """Raises if a pathwise estimator meets a posterior that cannot be differentiated through its samples."""
    if gradient_estimator in PATHWISE and not reparameterizable(posterior):
        raise ValueError(
            f"The encoder's posterior ({type(posterior).__name__}) is not reparameterizable (binary latents, say), "
            f"so the {gradient_estimator!r} estimator cannot differentiate through its samples. Use "
            "gradient_estimator='score_function' (or 'vimco' with objective='iwae'), objective='wake_sleep' or "
            "'reweighted_wake_sleep', or an encoder returning a reparameterizable distribution."
        )


def default_estimator(objective, posterior, num_samples):
    """The estimator a model uses when none is asked for: the pathwise one where q is reparameterizable, else
    the score function (VIMCO's leave-one-out baselines for the IWAE bound with K >= 2); none for the
    wake-sleep family, whose gradients are their own."""
    if objective in WAKE_SLEEP:
        return None
    if reparameterizable(posterior):
        return "reparameterization"
    return "vimco" if objective == "iwae" and num_samples >= 2 else "score_function"


def _log_mean_exp(values, axis=0):
    """log mean exp over `axis`, whose length may be known only at run time (TFP's broadcasting of one sample
    against an unknown batch leaves it unknown)."""
    count = values.shape[axis] or tf.shape(values)[axis]
    return tf.reduce_logsumexp(values, axis=axis) - tf.math.log(tf.cast(count, values.dtype))


def _with_gradient_of(value, surrogate):
    """`value`, whose gradient is that of `surrogate`."""
    return tf.stop_gradient(value) + (surrogate - tf.stop_gradient(surrogate))


def bound_terms(
    images,
    posterior,
    decode,
    prior,
    seed,
    objective="elbo",
    gradient_estimator="reparameterization",
    num_samples=1,
    kl="analytic",
    beta=1.0,
    baseline=0.0,
    observed=None,
    prior_draw_weight=0.0,
    encode=None,
    recognition_update="wake",
):
    """Per-example terms of the chosen bound and estimator for one batch: a dict of (B,) tensors.

      loss           the surrogate to minimize: value −bound (with β), gradient the estimator's;
      reconstruction −(1/K) Σ_k log p(x|z_k), summed over pixels;
      kl             KL(q(z|x) || p(z)): `kl` "analytic" (closed form) or "monte_carlo" (over the bound's draws);
      elbo           −(reconstruction + kl), whatever the objective, for comparison;
      bound          the objective's value (the ELBO, or the IWAE bound with K = num_samples);
      signal         (score-function estimators) the learning signal the baseline tracks.

    `beta` weighs the KL term of the ELBO and log p(z) − log q(z|x) inside the IWAE weights
    (β = 1 is the bound itself; `bound` and `elbo` always use β = 1). `prior_draw_weight` w > 0 trains on
    Sohn et al.'s (2015) hybrid objective: the loss becomes (1 − w)·loss − w·log p(x | z), z ~ p(z) drawn
    from the prior (their "GSNN" term), so the decoder also learns to make the data from codes the prior
    gives, as sampling will; the reported bounds are unchanged.
    """
    if objective in WAKE_SLEEP:
        return wake_sleep_terms(images, posterior, encode, decode, prior, seed, objective, num_samples,
                                recognition_update, observed)
    beta = tf.cast(beta, tf.float32)
    z = sample(posterior, num_samples, seed)  # (K, B, latent)
    if gradient_estimator not in PATHWISE:
        z = tf.stop_gradient(z)
    if gradient_estimator == "doubly_reparameterized" and objective == "iwae":
        log_likelihood, dreg_surrogate = _dreg_pieces(images, posterior, decode, prior, z, beta, observed)
    else:
        log_likelihood = image_log_prob(decode(z), images, observed)  # (K, B)
    log_prior, log_posterior = prior.log_prob(z), posterior.log_prob(z)
    kl_term = kl_divergence(posterior, prior, z, kl)
    reconstruction = -tf.reduce_mean(log_likelihood, axis=0)
    elbo = -(reconstruction + kl_term)
    log_weights = log_likelihood + beta * (log_prior - log_posterior)  # (K, B); with gradients of every kind
    if objective == "elbo":
        value = -(reconstruction + beta * kl_term)
        bound = elbo
    else:
        value = _log_mean_exp(log_weights)
        bound = _log_mean_exp(log_likelihood + log_prior - log_posterior)

    if gradient_estimator == "reparameterization":
        surrogate = value
    elif gradient_estimator == "doubly_reparameterized":
        if objective == "elbo":  # sticking the landing: the path derivative, q's parameters held in log q
            surrogate = tf.reduce_mean(log_likelihood + beta * (log_prior - stopped(posterior).log_prob(z)), axis=0)
        else:
            surrogate = dreg_surrogate
    else:
        # Score-function estimators: z is held fixed; the encoder learns through log q(z|x) weighted by
        # the learning signal minus a baseline. The value's own direct gradient (decoder; q's parameters
        # inside log q or the analytic KL) is kept, as in TFP's `monte_carlo.expectation`.
        if gradient_estimator == "vimco":
            log_leave_one_out, _ = tfp.stats.log_soomean_exp(log_weights, axis=0)  # (K, B)
            centred = value - log_leave_one_out  # each sample's baseline: the bound with it swapped out
        else:
            if objective == "elbo":  # one signal per sample
                signal = log_likelihood if kl == "analytic" else log_weights  # (K, B)
            else:  # the bound, shared by the K samples
                signal = value[None]  # (1, B)
            centred = signal - baseline
        score = tf.reduce_sum(tf.stop_gradient(centred) * log_posterior, axis=0)
        surrogate = value + (score / num_samples if objective == "elbo" else score)
    terms = {
        "loss": -_with_gradient_of(value, surrogate),
        "reconstruction": reconstruction,
        "kl": kl_term,
        "elbo": elbo,
        "bound": bound,
    }
    if gradient_estimator == "score_function":
        terms["signal"] = tf.reduce_mean(signal, axis=0)
    if prior_draw_weight:
        from_prior = draw(prior, tf.shape(images)[0], tf.random.experimental.stateless_fold_in(seed, 1, alg=RANDOM_ALGORITHM))
        weight = tf.cast(prior_draw_weight, tf.float32)
        terms["loss"] = (1.0 - weight) * terms["loss"] - weight * image_log_prob(decode(from_prior), images, observed)
    return terms


def wake_sleep_terms(images, posterior, encode, decode, prior, seed, objective="wake_sleep", num_samples=1,
                     recognition_update="wake", observed=None):
    """Per-example terms of the wake-sleep family, whose surrogate's gradients are each network's own update.

      "wake_sleep" (Hinton et al. 1995): the generative network maximizes log p(x, h) at h ~ q(h|x), the mean
          over the K draws (wake phase); the recognition network maximizes log q(h|x) at dreams (h, x) ~ p(h, x)
          (sleep phase).
      "reweighted_wake_sleep" (Bornschein & Bengio 2015): the generative network maximizes Σ_k w̃_k log p(x, h_k)
          with the self-normalized importance weights w̃_k ∝ p(x, h_k)/q(h_k|x), which is the IWAE bound's
          generative gradient; the recognition network Σ_k w̃_k log q(h_k|x) ("wake"), the sleep phase ("sleep"),
          or half of each ("both").
    Every h is held fixed (no gradient through samples), so they apply to binary layers as well. The loss's value
    is −(the IWAE bound with these K draws), "bound", the scale runs compare on; `encode` (x -> q(h|x)) serves the
    sleep phase. "reconstruction", "kl" (Monte Carlo) and "elbo" are as for the ELBO, from the same draws.
    """
    z = tf.stop_gradient(sample(posterior, num_samples, seed))  # (K, B, latent)
    log_likelihood = image_log_prob(decode(z), images, observed)  # (K, B)
    log_joint = log_likelihood + prior.log_prob(z)
    log_posterior = posterior.log_prob(z)
    log_weights = log_joint - log_posterior
    if objective == "wake_sleep":
        weights = tf.fill(tf.shape(log_weights), 1.0 / num_samples)
    else:
        weights = tf.stop_gradient(tf.nn.softmax(log_weights, axis=0))  # w̃_k
    generative = tf.reduce_sum(weights * log_joint, axis=0)
    updates = {"wake": lambda: tf.reduce_sum(weights * log_posterior, axis=0),
               "sleep": lambda: _sleep_phase(images, encode, decode, prior, seed)}
    if objective == "wake_sleep" or recognition_update == "sleep":
        recognition = updates["sleep"]()
    elif recognition_update == "wake":
        recognition = updates["wake"]()
    else:
        recognition = 0.5 * (updates["wake"]() + updates["sleep"]())
    bound = _log_mean_exp(log_weights)
    reconstruction = -tf.reduce_mean(log_likelihood, axis=0)
    kl = tf.reduce_mean(log_posterior - (log_joint - log_likelihood), axis=0)
    return {"loss": -_with_gradient_of(bound, generative + recognition), "reconstruction": reconstruction, "kl": kl,
            "elbo": -(reconstruction + kl), "bound": bound}


def dream(prior, decode, count, seed):
    """(codes, images) drawn from the generative model, h ~ p(h) then x ~ p(x|h), `count` of each, held fixed."""
    prior_seed, pixel_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2, alg=RANDOM_ALGORITHM))
    codes = tf.stop_gradient(draw(prior, count, prior_seed))
    return codes, tf.stop_gradient(decode(codes).sample(seed=pixel_seed))


def sleep_seed(seed):
    """The seed of a step's dreams, apart from the seed of its draws from q."""
    return tf.random.experimental.stateless_fold_in(seed, 2, alg=RANDOM_ALGORITHM)


def _sleep_phase(images, encode, decode, prior, seed):
    """log q(h|x) at dreams (`dream`), one per example of the batch, shape (B,)."""
    if encode is None:
        raise ValueError("The sleep phase needs the recognition network: pass encode (images -> q(h|x)).")
    codes, dreams = dream(prior, decode, tf.shape(images)[0], sleep_seed(seed))
    return encode(dreams).log_prob(codes)


def _dreg_pieces(images, posterior, decode, prior, z, beta, observed=None):
    """log p(x|z) and the DReG surrogate of the IWAE bound (Tucker et al. 2018).

    The decoder's gradient is the IWAE one, Σ_k w̃_k ∇θ log w_k; the encoder's is
    Σ_k w̃_k² ∂log w_k/∂z_k · ∂z_k/∂φ with q's parameters held fixed in log w.
    (TFP's DReG loss gives every parameter the squared weights, right for a
    surrogate posterior alone but not for a decoder trained jointly.)
    """
    held = tf.stop_gradient(z)
    q_held = stopped(posterior)
    with tf.GradientTape() as tape:
        tape.watch(held)
        log_likelihood = image_log_prob(decode(held), images, observed)
        log_weights = log_likelihood + beta * (prior.log_prob(held) - q_held.log_prob(held))  # (K, B)
    path = tf.stop_gradient(tape.gradient(log_weights, held))  # ∂log w_k / ∂z_k, (K, B, latent)
    normalized = tf.stop_gradient(tf.nn.softmax(log_weights, axis=0))  # w̃_k
    decoder_part = _log_mean_exp(log_weights)  # gradients reach the decoder only (z and q held)
    encoder_part = tf.reduce_sum(normalized[..., None] ** 2 * path * z, axis=[0, 2])  # through z = μ + σ·ε only
    return log_likelihood, decoder_part + encoder_part


def class_consistency_terms(images, labels, classifier, decode, prior, seed):
    """Per-example (B,) terms of an auxiliary classifier c(y|x) for a model of labels (the classification loss on
    generated images of Bao et al.'s CVAE-GAN, 2017, and Odena et al.'s AC-GAN, 2017):

      classification  −log c(y|x) of the real images: the classifier learns the classes from the data;
      consistency     −log c(y|x̂) of x̂, the decoder's mean at a draw z ~ p(z|y), with the classifier held fixed:
                      the decoder and prior learn to make images of the class they are given.
    """
    classification = -classifier(images).log_prob(labels)
    frozen = [tf.stop_gradient(variable.value) for variable in classifier.trainable_variables]
    fixed = [variable.value for variable in classifier.non_trainable_variables]
    generated = decode(draw(prior, tf.shape(images)[0], tf.random.experimental.stateless_fold_in(seed, 2, alg=RANDOM_ALGORITHM)))
    judged, _ = classifier.stateless_call(frozen, fixed, tf.cast(generated.mean(), images.dtype))
    return {"classification": classification, "consistency": -judged.log_prob(labels)}


def label_marginal_terms(per_class, label_posterior):
    """Terms of a bound on log p(x) with the label unknown, from the conditional bound of every (class, example) pair.

    `per_class` holds `bound_terms` outputs of shape (C, B); `label_posterior` r(y|x) has batch shape (B,).
    U(x) = Σ_y r(y|x) [L(x, y) + log p(y)] + H(r(y|x)), p(y) uniform, the sum over classes taken exactly: a
    bound for any r, M2's unlabeled bound with r = q(y|x), and log Σ_y p(y) exp L(x, y) with r ∝ p(y) exp L(x, y).
    "kl" includes the label's part, KL(r(y|x) || p(y)), so elbo = −(reconstruction + kl).
    """
    log_prior_y = -math.log(per_class["loss"].shape[0])
    probs = tf.transpose(label_posterior.probs_parameter())  # (C, B)
    entropy = label_posterior.entropy()
    expected = lambda values: tf.reduce_sum(probs * values, axis=0)
    reconstruction = expected(per_class["reconstruction"])
    kl = expected(per_class["kl"]) - entropy - log_prior_y
    return {"loss": expected(per_class["loss"]) - entropy - log_prior_y, "reconstruction": reconstruction, "kl": kl,
            "elbo": -(reconstruction + kl)}


def semi_supervised_terms(per_class, class_posterior, labels, alpha, labeled_fraction):
    """Model M2's per-example terms (Kingma et al. 2014) from the conditional bound of every (class, example) pair.

    `per_class` holds `bound_terms` outputs of shape (C, B) for example b given class c;
    `class_posterior` is q(y|x) with batch shape (B,); `labels` (B,) has −1 for unlabeled examples.
      labeled:   L(x, y) = bound(x | y) + log p(y), and α-weighted −log q(y|x);
      unlabeled: U(x) = Σ_y q(y|x) L(x, y) + H(q(y|x)) (`label_marginal_terms`).
    "kl" includes the label's part (−log p(y), or KL(q(y|x) || p(y))), so elbo = −(reconstruction + kl).
    In training, bounds are weighted so that any mix of labeled and unlabeled examples in a batch
    estimates the data set's mean bound given its `labeled_fraction` (None: unweighted, as in
    evaluation); the classification term is α times
    the batch's mean −log q(y|x) over labeled examples, i.e. α·N/N_l per labeled example.
    """
    log_prior_y = -math.log(per_class["loss"].shape[0])  # p(y) uniform
    labeled = labels >= 0
    safe_labels = tf.where(labeled, tf.cast(labels, tf.int32), 0)
    probs = tf.transpose(class_posterior.probs_parameter())  # (C, B)
    unlabeled = label_marginal_terms(per_class, class_posterior)

    def given_label(values):
        return tf.gather(tf.transpose(values), safe_labels[:, None], batch_dims=1)[:, 0]

    reconstruction = tf.where(labeled, given_label(per_class["reconstruction"]), unlabeled["reconstruction"])
    kl = tf.where(labeled, given_label(per_class["kl"]) - log_prior_y, unlabeled["kl"])
    bound_loss = tf.where(labeled, given_label(per_class["loss"]) - log_prior_y, unlabeled["loss"])

    mask = tf.cast(labeled, tf.float32)
    batch = tf.cast(tf.size(labels), tf.float32)
    num_labeled = tf.reduce_sum(mask)
    if labeled_fraction is not None:
        labeled_weight = labeled_fraction * batch / tf.maximum(num_labeled, 1.0)
        unlabeled_weight = (1.0 - labeled_fraction) * batch / tf.maximum(batch - num_labeled, 1.0)
        bound_loss = (mask * labeled_weight + (1 - mask) * unlabeled_weight) * bound_loss
    classification = -class_posterior.log_prob(safe_labels)
    loss = bound_loss + (
        alpha * batch / tf.maximum(num_labeled, 1.0) * mask * classification
    )
    correct = tf.cast(tf.equal(tf.cast(tf.argmax(probs, axis=0), tf.int32), safe_labels), tf.float32)
    terms = {
        "loss": loss,
        "reconstruction": reconstruction,
        "kl": kl,
        "elbo": -(reconstruction + kl),
        "classification": (classification, mask),
        "accuracy": (correct, mask),
    }
    if "signal" in per_class:
        terms["signal"] = tf.reduce_mean(per_class["signal"], axis=0)
    return terms


def updated_baseline(baseline, signal):
    """The running-mean baseline after one batch's learning `signal`."""
    return (1.0 - BASELINE_UPDATE) * baseline + BASELINE_UPDATE * tf.reduce_mean(signal)


def iwae_bound(images, posterior, decode, prior, seed, num_samples, chunk_size, observed=None):
    """Importance-sampled estimate of log p(x) with q(z|x) as proposal (Burda et al. 2015).

    log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K.
    Samples are drawn `chunk_size` at a time and reduced with a running
    logsumexp, so memory stays flat in K; draws beyond K in the last chunk are masked.
    """
    num_chunks = math.ceil(num_samples / chunk_size)
    batch_shape = tf.shape(images)[:1]
    running_max = tf.fill(batch_shape, -float("inf"))
    running_sum = tf.zeros(batch_shape)
    for chunk in tf.range(num_chunks):
        chunk_seed = tf.random.experimental.stateless_fold_in(seed, chunk, alg=RANDOM_ALGORITHM)
        z = sample(posterior, chunk_size, chunk_seed)  # (chunk, B, latent)
        log_weights = image_log_prob(decode(z), images, observed) + prior.log_prob(z) - posterior.log_prob(z)  # (chunk, B)
        index = chunk * chunk_size + tf.range(chunk_size)
        log_weights = tf.where((index < num_samples)[:, None], log_weights, -float("inf"))
        new_max = tf.maximum(running_max, tf.reduce_max(log_weights, axis=0))
        running_sum = running_sum * tf.exp(running_max - new_max) + tf.reduce_sum(tf.exp(log_weights - new_max), axis=0)
        running_max = new_max
    return running_max + tf.math.log(running_sum) - math.log(num_samples)
