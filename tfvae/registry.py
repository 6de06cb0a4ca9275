"""Every part tfvae builds by name, and where each is defined: model kinds, priors, posteriors, likelihoods, networks.

This is the one list that `tfvae.load_model`, the command line's choices (`tfvae train --model/--prior/--posterior/
--likelihood/--architecture`), `tfvae.names` and the docs' tables of parts read. It is pure Python, so the command
line lists the choices without importing TensorFlow. A new part is a class in its module plus one entry here; each
class registers itself with Keras where it is defined (`keras.saving.register_keras_serializable`).
"""

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Entry:
    """A part: the module and attribute that define it, what it is in one line, and (for a model kind) the run
    settings it trains best with where they differ from `tfvae.config`'s (`tfvae train` applies them unless
    the command line sets them)."""

    module: str
    attribute: str
    summary: str
    run_defaults: dict = dataclasses.field(default_factory=dict)

    def load(self):
        """The class (or builder) itself, imported on first use."""
        return getattr(importlib.import_module(self.module), self.attribute)

    @property
    def public_name(self):
        """Where users find it: models at the top level (`tfvae.VAE`), other parts in their module."""
        return f"tfvae.{self.attribute}" if self.module.startswith("tfvae.models.") else f"{self.module}.{self.attribute}"


# Model kinds (`tfvae.models`), as `tfvae train --model NAME` names them.
MODELS = {
    "vae": Entry("tfvae.models.vae", "VAE", "p(x): generation, density estimation, completion; no labels"),
    "conditional": Entry("tfvae.models.conditional", "ConditionalVAE",
                         'p(x|y) (Sohn et al. 2015): "give me a 7"; every example labeled',
                         {"prior": "class_conditional", "prior_draw_weight": 0.1, "class_consistency_weight": 10.0}),
    "semi-supervised": Entry("tfvae.models.stacked", "StackedSemiSupervisedVAE",
                             "M1+M2 (Kingma et al. 2014): M2 on the codes of a VAE trained first on every image; "
                             "the best classifier from few labels (-1 = unknown)",
                             {"latent_dim": 50, "binarize": "static", "epochs": 50, "batch_size": 100}),
    "hierarchical": Entry("tfvae.models.hierarchical", "HierarchicalVAE",
                          "a Helmholtz machine: stochastic layers (--latent-dims), Gaussian or binary (--latent-type)",
                          {"warmup_epochs": 8}),  # KL warm-up over 80% of the epochs (none for wake-sleep)
    "m2": Entry("tfvae.models.semi_supervised", "SemiSupervisedVAE",
                "M2 (ibid.): p(x|y) and a classifier q(y|x) trained together on pixels (-1 = unknown)",
                {"latent_dim": 50}),
}

# Priors p(z) (`tfvae.priors`).
PRIORS = {
    "standard_normal": Entry("tfvae.priors", "StandardNormal", "N(0, I)"),
    "mixture": Entry("tfvae.priors", "MixtureOfGaussians", "a mixture of diagonal Gaussians with learned weights, means, scales"),
    "vamp": Entry("tfvae.priors", "VampPrior",
                  "the mixture of the encoder's posteriors at 500 learned pseudo-inputs (Tomczak & Welling 2018)"),
    "class_conditional": Entry("tfvae.priors", "ClassConditionalNormal",
                               "p(z|y): a learned Gaussian per class (Sohn et al. 2015), for models of labels"),
    "class_conditional_vamp": Entry("tfvae.priors", "ClassConditionalVampPrior",
                                    "p(z|y): a VampPrior per class, over its own pseudo-inputs, for models of labels"),
}

# Approximate posteriors q(z|x), the encoder's head (`tfvae.posteriors`).
POSTERIORS = {
    "diagonal": Entry("tfvae.posteriors", "DiagonalGaussian", "N(μ(x), diag σ²(x))"),
    "full_covariance": Entry("tfvae.posteriors", "FullCovarianceGaussian", "N(μ(x), L(x)L(x)ᵀ), L lower-triangular"),
    "iaf": Entry("tfvae.posteriors", "InverseAutoregressiveFlow",
                 "a diagonal Gaussian through 2 inverse autoregressive flow steps (Kingma et al. 2016)"),
}

# Likelihoods p(x|z), the decoder's head (`tfvae.likelihoods`).
LIKELIHOODS = {
    "bernoulli": Entry("tfvae.likelihoods", "BernoulliLikelihood", "binary pixels in [0, 1]"),
    "gaussian": Entry("tfvae.likelihoods", "GaussianLikelihood", "real pixels, mean squashed into (0, 1), σ fixed or learned"),
    "feature-gaussian": Entry("tfvae.likelihoods", "FeatureGaussianLikelihood",
                              "real features (another model's codes), σ learned per feature"),
}

# Network architectures: (encoder, decoder, classifier) builders (`tfvae.networks`).
ARCHITECTURES = {
    "mlp": Entry("tfvae.networks", "MLP", "fully connected layers"),
    "conv": Entry("tfvae.networks", "CONV", "stride-2 convolutions, then dense layers"),
}

KINDS = {
    "model": MODELS,
    "prior": PRIORS,
    "posterior": POSTERIORS,
    "likelihood": LIKELIHOODS,
    "architecture": ARCHITECTURES,
}


def lookup(kind, name):
    """The part of `kind` ("model", "prior", ...) registered as `name`; a ValueError lists the names that exist."""
    entries = KINDS[kind]
    if name not in entries:
        raise ValueError(f"Unknown {kind} {name!r}. Expected one of {', '.join(entries)}.")
    return entries[name].load()


def import_all():
    """Imports every module that defines a registered part, so Keras knows every tfvae class (for loading files)."""
    for entries in KINDS.values():
        for entry in entries.values():
            importlib.import_module(entry.module)
