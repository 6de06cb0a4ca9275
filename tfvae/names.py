"""The names users choose parts and methods by (pure Python, for the command line and run configurations).

Parts (models, priors, posteriors, likelihoods, architectures) come from `tfvae.registry`, their one list;
estimators are named as `tfp.vi.GradientEstimators` names them, and `tfvae.objectives` holds what each computes.
"""

from tfvae import registry

MODELS = tuple(registry.MODELS)
PRIORS = tuple(registry.PRIORS)
POSTERIORS = tuple(registry.POSTERIORS)
LIKELIHOODS = tuple(registry.LIKELIHOODS)
ARCHITECTURES = tuple(registry.ARCHITECTURES)

GRADIENT_ESTIMATORS = ("reparameterization", "score_function", "doubly_reparameterized", "vimco")

# Which estimators apply to which objective. The wake-sleep family has gradients of its own (a wake phase for
# the generative network, a wake or sleep phase for the recognition network), so no estimator applies.
OBJECTIVES = {
    "elbo": ("reparameterization", "score_function", "doubly_reparameterized"),
    "iwae": ("reparameterization", "score_function", "doubly_reparameterized", "vimco"),
    "wake_sleep": (),
    "reweighted_wake_sleep": (),
}
WAKE_SLEEP = ("wake_sleep", "reweighted_wake_sleep")

# How reweighted wake-sleep updates the recognition network (Bornschein & Bengio 2015; Le et al. 2019
# recommend the wake phase).
RECOGNITION_UPDATES = ("wake", "sleep", "both")

# The distributions of a hierarchical model's stochastic layers (`tfvae.hierarchy`).
LATENT_TYPES = ("gaussian", "bernoulli")

# How images become binary for a Bernoulli likelihood: drawn afresh each epoch, drawn once, or left grey (None).
BINARIZATIONS = ("dynamic", "static", None)

# The `tf.distribute` strategies a run can ask for (`tfvae.strategies` builds them).
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")

# How KL(q || p) is computed: in closed form where TensorFlow Probability has it for the pair, else by Monte
# Carlo ("auto"); or always one way.
KL_ESTIMATORS = ("auto", "analytic", "monte_carlo")

# How M2 adds labeled and unlabeled bounds (`SemiSupervisedVAE(bound_weighting=...)`).
BOUND_WEIGHTINGS = ("data", "batch")

# How `VAE.complete` fills in missing pixels (tfvae.completion).
COMPLETION_METHODS = ("importance", "pseudo_gibbs", "metropolis_within_gibbs")

# The masks `tfvae.masks.make` builds by name (P a probability, N a count of quadrants).
MASKS = ("top_half", "bottom_half", "left_half", "right_half", "center", "random:P", "quadrants:N")


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices`; otherwise raises ValueError naming them."""
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}. Expected one of {', '.join(map(str, choices))}.")
    return value


def check_warmup_applies(objective):
    """Raises ValueError if KL warm-up cannot apply to `objective` (the wake-sleep family has no KL weight β)."""
    if objective in WAKE_SLEEP:
        raise ValueError(
            f"KL warm-up anneals beta, the KL weight of the ELBO and IWAE bounds; objective={objective!r} has none. "
            "Drop the KLWarmup callback (warmup_epochs 0), or train with objective 'elbo' or 'iwae'."
        )


def check_objective(objective, gradient_estimator, num_samples):
    """Returns (objective, gradient_estimator) if the estimator applies to the objective with `num_samples` draws
    (None: the objective's own choice, made by the model from its posterior)."""
    check_choice("objective", objective, tuple(OBJECTIVES))
    if objective in WAKE_SLEEP:
        if gradient_estimator is not None:
            raise ValueError(
                f"objective={objective!r} has gradients of its own (wake and sleep phases): leave gradient_estimator "
                f"out. Received: gradient_estimator={gradient_estimator!r}"
            )
        return objective, None
    if gradient_estimator is None:
        return objective, None
    check_choice("gradient_estimator", gradient_estimator, GRADIENT_ESTIMATORS)
    if gradient_estimator not in OBJECTIVES[objective]:
        raise ValueError(
            f"The gradient_estimator {gradient_estimator!r} does not apply to objective={objective!r}. "
            f"Expected one of {', '.join(OBJECTIVES[objective])}, or objective='iwae'."
        )
    if gradient_estimator == "vimco" and num_samples < 2:
        raise ValueError(
            f"The 'vimco' estimator needs num_samples >= 2 (leave-one-out baselines). Received: num_samples={num_samples}"
        )
    return objective, gradient_estimator
