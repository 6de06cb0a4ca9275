"""The names users choose models, objectives and gradient estimators by (pure Python, for the command line).

Estimators are named as `tfp.vi.GradientEstimators` names them; `tfvae.objectives`
holds what each one computes.
"""

GRADIENT_ESTIMATORS = ("reparameterization", "score_function", "doubly_reparameterized", "vimco")

# Which estimators apply to which objective.
OBJECTIVES = {
    "elbo": ("reparameterization", "score_function", "doubly_reparameterized"),
    "iwae": ("reparameterization", "score_function", "doubly_reparameterized", "vimco"),
}

# The models `tfvae train --model` builds: what each one learns from labels.
MODELS = {
    "vae": "VAE: p(x), no labels",
    "conditional": "ConditionalVAE: p(x|y), every example labelled",
    "semi-supervised": "SemiSupervisedVAE (M2): p(x|y) and q(y|x) from a few labels (--labeled-examples)",
}

# How M2 adds labelled and unlabelled bounds (`SemiSupervisedVAE(bound_weighting=...)`).
BOUND_WEIGHTINGS = ("data", "batch")

# How `VAE.complete` fills in missing pixels (tfvae.completion).
COMPLETION_METHODS = ("importance", "pseudo_gibbs", "metropolis_within_gibbs")

# The masks `tfvae.masks.make` builds by name (P a probability, N a count of quadrants).
MASKS = ("top_half", "bottom_half", "left_half", "right_half", "center", "random:P", "quadrants:N")
