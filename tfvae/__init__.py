"""tfvae: Variational Autoencoders for Keras 3 and TensorFlow Probability.

Attributes are imported lazily so that `import tfvae` (and the `tfvae --help`
command line) does not pay TensorFlow's import time until a model is used.
"""

import importlib

from tfvae._version import __version__

_LAZY_ATTRIBUTES = {
    "VAE": ("tfvae.models", "VAE"),
    "ConditionalVAE": ("tfvae.models", "ConditionalVAE"),
    "SemiSupervisedVAE": ("tfvae.models", "SemiSupervisedVAE"),
    "StackedSemiSupervisedVAE": ("tfvae.models", "StackedSemiSupervisedVAE"),
    "HierarchicalVAE": ("tfvae.models", "HierarchicalVAE"),
    "KLWarmup": ("tfvae.callbacks", "KLWarmup"),
    "TensorBoardImages": ("tfvae.callbacks", "TensorBoardImages"),
    "load_model": ("tfvae.checkpoints", "load_model"),
}

__all__ = [  # noqa: RUF022 -- grouped: version, classes, submodules
    "__version__",
    "VAE",
    "ConditionalVAE",
    "SemiSupervisedVAE",
    "StackedSemiSupervisedVAE",
    "HierarchicalVAE",
    "KLWarmup",
    "TensorBoardImages",
    "load_model",
    "allocator",
    "callbacks",
    "checkpoints",
    "completion",
    "config",
    "data",
    "diagnostics",
    "distributions",
    "errors",
    "evaluation",
    "export",
    "flows",
    "hierarchy",
    "images",
    "likelihoods",
    "limits",
    "masks",
    "models",
    "names",
    "networks",
    "objectives",
    "plots",
    "posteriors",
    "precision",
    "priors",
    "registry",
    "run_directory",
    "strategies",
    "training",
]


_SUBMODULES = frozenset(__all__) - {"__version__", *_LAZY_ATTRIBUTES}


def __getattr__(name):
    if name in _LAZY_ATTRIBUTES:
        module_name, attribute = _LAZY_ATTRIBUTES[name]
        return getattr(importlib.import_module(module_name), attribute)
    if name in _SUBMODULES:
        return importlib.import_module(f"tfvae.{name}")
    raise AttributeError(f"module 'tfvae' has no attribute {name!r}")
