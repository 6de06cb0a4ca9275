"""Gradient-variance diagnostics: how noisy each gradient estimator is on a trained model.

For each estimator, the minibatch gradient of the model's objective is drawn
`num_draws` times with fresh noise; the spread across draws is what SGD sees.
This is the evidence behind the reparameterization trick (Kingma & Welling
2013) and behind DReG (Tucker et al. 2018; SNR as in Rainforth et al. 2018).
"""

import numpy as np
import tensorflow as tf

from tfvae import names, objectives


def _flat(gradients):
    return tf.concat([tf.reshape(g, [-1]) for g in gradients], axis=0)


def _score_baseline(vae, images, labels, seed, objective, num_samples):
    """The score-function baseline: the model's running mean if it trained with one, else the signal's mean."""
    if getattr(vae, "gradient_estimator", None) == "score_function" and objective == vae.objective:
        return vae.baseline
    terms = vae.objective_terms(images, seed, labels, objective=objective, gradient_estimator="score_function",
                                num_samples=num_samples)
    return tf.reduce_mean(terms["signal"])


def gradient_variance(vae, images, gradient_estimators=None, num_draws=100, seed=None, objective=None, num_samples=None,
                      labels=None):
    """{estimator: {"encoder_variance", "decoder_variance", "encoder_snr", "decoder_snr"}} for one minibatch `images`.

    `*_variance` is the per-parameter variance of the minibatch gradient across
    `num_draws` draws, summed over the network's parameters; `*_snr` is the mean
    over parameters of |mean| / std, leaving out parameters whose gradient is
    the same in every draw: exactly zero (weights of pixels that are zero in every
    image), or rounded to one value (16-bit gradients under mixed precision).
    `gradient_estimators` defaults to every estimator of the objective that applies
    to the model's posterior (no pathwise one for binary codes). `objective` and
    `num_samples` default to the model's own; models of labels take `labels` and
    are measured on the bound given them. The score-function
    estimator uses the model's running-mean baseline when it trained with one,
    otherwise the mean learning signal.
    """
    if not hasattr(vae, "objective"):
        raise ValueError(
            f"Gradient variance measures the estimators of one model's bound on images; a {type(vae).__name__} "
            "trains M2 on the codes of a frozen M1. Measure M1 instead (`model.m1`; in a run, its m1 folder)."
        )
    objective = objective or vae.objective
    num_samples = num_samples or vae.num_samples
    if objective not in ("elbo", "iwae"):
        raise ValueError(
            f"Gradient variance compares the estimators of the ELBO and IWAE bounds; objective={objective!r} has "
            "gradients of its own. Pass objective='iwae' (or 'elbo'; --objective on the command line) to measure "
            "the bounds' estimators on this model."
        )
    images = tf.convert_to_tensor(np.asarray(images, np.float32))
    labels = vae._checked_labels(labels, len(images))
    posterior = vae._posterior(images, labels)
    if gradient_estimators is None:
        gradient_estimators = [name for name in names.OBJECTIVES[objective]
                               if name not in objectives.PATHWISE or objectives.reparameterizable(posterior)]
    for estimator in gradient_estimators:  # every one checked before the first is measured
        objectives.check_reparameterizable(posterior, objectives.check_objective(objective, estimator, num_samples)[1])
    base_seed = tf.constant([0 if seed is None else int(seed), 0], tf.int32)
    groups = {"encoder": vae.encoder.trainable_variables, "decoder": vae.decoder.trainable_variables}
    results = {}
    for estimator in gradient_estimators:
        _, estimator = objectives.check_objective(objective, estimator, num_samples)
        baseline = _score_baseline(vae, images, labels, base_seed, objective, num_samples) if estimator == "score_function" else 0.0

        @tf.function(jit_compile=True)
        def gradient(draw_seed, estimator=estimator, baseline=baseline):
            with tf.GradientTape() as tape:
                terms = objectives.bound_terms(
                    images, vae._posterior(images, labels), vae._decoder_for(labels), vae.prior_distribution(labels), draw_seed,
                    objective=objective,
                    gradient_estimator=estimator, num_samples=num_samples, kl=vae.kl_estimator, beta=vae.beta, baseline=baseline,
                )
                loss = tf.reduce_mean(terms["loss"])
            gradients = tape.gradient(loss, list(groups.values()))
            return {name: _flat(group) for name, group in zip(groups, gradients)}

        draws = [gradient(tf.random.experimental.stateless_fold_in(base_seed, draw)) for draw in range(num_draws)]
        results[estimator] = {}
        for name in groups:
            stacked = np.stack([draw[name].numpy() for draw in draws]).astype(np.float64)  # (draws, parameters)
            mean, std = stacked.mean(axis=0), stacked.std(axis=0, ddof=1)
            results[estimator][f"{name}_variance"] = float(np.sum(std**2))
            varying = std > 0  # a gradient equal in every draw has no noise to measure a ratio against
            results[estimator][f"{name}_snr"] = float(np.mean(np.abs(mean[varying]) / std[varying]))
    return results
