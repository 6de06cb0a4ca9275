"""What a training run is, by concern: data, model, optimization, execution, output (pure Python).

`RunConfig` is written as `run_config.json` beside every run and export, and `read_run_config` is the one
function that reads it back (older runs wrote one flat record; it reads those too). The command line takes
its options' defaults and choices from here and from `tfvae.registry`, so they cannot drift.
"""

import dataclasses
import json
import logging
import pathlib

from tfvae import names, registry
from tfvae.errors import RunError
from tfvae.precision import PRECISIONS

logger = logging.getLogger("tfvae")


@dataclasses.dataclass
class DataConfig:
    """Which images, and how they are prepared."""

    dataset: str = "mnist"
    data_dir: str | None = None  # a folder of IDX files, an .npz file, or a TFDS data directory
    download: bool = True  # False: never touch the network for data
    train_split: str = "train"
    eval_split: str = "test"
    binarize: str | None = "dynamic"  # evaluation always uses a fixed-seed ("static") binarization
    missing: str | None = None  # "random:P": hide each training pixel with probability P (tfvae.masks.hide_at_random)
    labeled_examples: int | None = None  # semi-supervised: labels kept, class-balanced; None keeps every label


@dataclasses.dataclass
class ModelConfig:
    """The model's parts and its training objective (everything `get_config` of the model records)."""

    model: str = "vae"  # tfvae.registry.MODELS
    architecture: str = "mlp"
    latent_dim: int = 20  # Kingma & Welling's MNIST experiments use 2 to 200
    latent_dims: tuple = (100, 50)  # hierarchical: units of each stochastic layer, bottom up (Burda et al.'s two layers)
    hidden_units: tuple | None = None  # the MLP's dense layers (M1's, for semi-supervised); None: one of 400 units
    latent_type: str = "gaussian"  # hierarchical: "gaussian" or "bernoulli" (a sigmoid belief network)
    prior: str = "standard_normal"  # tfvae.registry.PRIORS
    posterior: str = "diagonal"  # tfvae.registry.POSTERIORS
    likelihood: str = "bernoulli"
    gaussian_scale: float | str = 0.1  # σ of a Gaussian likelihood, or "learned"
    kl: str = "auto"  # analytic where the (posterior, prior) pair allows, else Monte Carlo
    objective: str = "elbo"  # or "iwae" (Burda et al. 2015), "wake_sleep", "reweighted_wake_sleep" (tfvae.objectives)
    gradient_estimator: str | None = None  # None: the objective's own (pathwise where q allows, else the score function)
    recognition_update: str = "wake"  # reweighted wake-sleep: how the recognition network learns
    num_samples: int = 1  # L (or K for "iwae"): one sample per example suffices for the ELBO with batch >= 100
    beta: float = 1.0  # weight of the KL term
    prior_draw_weight: float = 0.0  # Sohn et al.'s hybrid objective: weight of decoding prior draws (0: the bound alone)
    class_consistency_weight: float = 0.0  # conditional: weight of an auxiliary classifier's judgement of generated images
    alpha: float = 10.0  # semi-supervised: weight of the classification loss (their α = 0.1·N is 0.1 here)
    bound_weighting: str = "data"  # semi-supervised: how labeled and unlabeled bounds add up


@dataclasses.dataclass
class OptimizationConfig:
    """How long and how fast the model learns."""

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    warmup_epochs: int = 0  # > 0: KL warm-up from β=0 to `beta` over this many epochs
    m1_epochs: int = 20  # semi-supervised (M1+M2): epochs of M1, the VAE trained first on every image
    seed: int = 0


@dataclasses.dataclass
class ExecutionConfig:
    """Where and how the steps run; none of it changes what is learned, beyond floating-point noise."""

    jit_compile: bool | str = "auto"  # "auto": tfvae.strategies.choose_jit_compile decides
    steps_per_execution: int = 16  # steps per call into the compiled function (fit's per-step overhead)
    precision: str = "float32"  # or "mixed_bfloat16" / "mixed_float16" (tfvae.precision)
    strategy: str = "auto"


@dataclasses.dataclass
class OutputConfig:
    """What the run writes, and where."""

    output_dir: str = "runs/latest"
    export_dir: str | None = None  # default: saved_models/<dataset>; "" skips the export
    log_likelihood_samples: int = 1000  # K for the importance-sampled log p(x) in metrics.json; 0 skips it


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimization": OptimizationConfig,
    "execution": ExecutionConfig,
    "output": OutputConfig,
}

# Which section each setting belongs to: setting names are unique across sections.
SECTION_OF = {field.name: section for section, cls in SECTIONS.items() for field in dataclasses.fields(cls)}

# Settings a resumed run must share with the run it continues: they shape the model or its data.
RESUME_SETTINGS = (
    *(field.name for field in dataclasses.fields(ModelConfig)),
    "dataset", "train_split", "labeled_examples", "missing", "precision", "m1_epochs",
)

# The model kinds that learn from few labels (−1 = unknown), and the one that trains a VAE first.
FEW_LABELS = ("semi-supervised", "m2")
PRETRAINS_VAE = ("semi-supervised",)

# Settings that only some model kinds use: asking for them with another kind is a mistake worth saying.
ONE_LAYER = tuple(kind for kind in registry.MODELS if kind != "hierarchical")
KIND_SETTINGS = {"alpha": FEW_LABELS, "bound_weighting": FEW_LABELS, "labeled_examples": FEW_LABELS,
                 "m1_epochs": PRETRAINS_VAE, "class_consistency_weight": ("conditional",), "latent_dims": ("hierarchical",), "latent_type": ("hierarchical",),
                 "latent_dim": ONE_LAYER, "posterior": ONE_LAYER, "architecture": ONE_LAYER, "hidden_units": ONE_LAYER,
                 "missing": ("vae", "conditional")}  # a classifier q(y|x) and a Helmholtz chain need whole images


def check_applies(model, names):
    """Raises RunError if a setting among `names` (given for a run of the `model` kind) is one that kind ignores."""
    for name in names:
        if name in KIND_SETTINGS and model not in KIND_SETTINGS[name]:
            option = f"--{name.replace('_', '-')}"
            raise RunError(
                f"{option} applies to --model {' or '.join(KIND_SETTINGS[name])}, not to --model {model}. "
                f"Add --model {KIND_SETTINGS[name][0]}, or leave {option} out."
            )


def default(name, model=None):
    """The default of the setting `name`: a model kind's own (`tfvae.registry.MODELS`) where it has one, else
    the one for every kind."""
    kind_defaults = registry.MODELS[model].run_defaults if model in registry.MODELS else {}
    return kind_defaults.get(name, SECTIONS[SECTION_OF[name]].__dataclass_fields__[name].default)


def kind_warmup_epochs(kind_defaults, settings):
    """The KL warm-up a kind trains with by default: the same share of the run's epochs as its default warm-up is
    of its default epochs, ending before the last epoch (so at least one epoch trains the whole bound), and none
    for objectives without a KL weight (the wake-sleep family)."""
    objective = settings.get("objective", kind_defaults.get("objective", default("objective")))
    if objective in names.WAKE_SLEEP:
        return 0
    default_epochs = kind_defaults.get("epochs", default("epochs"))
    epochs = settings.get("epochs", default_epochs)
    return min(round(kind_defaults["warmup_epochs"] * epochs / default_epochs), epochs - 1)


@dataclasses.dataclass
class RunConfig:
    """Everything a training run needs, by concern; written as `run_config.json` beside its outputs."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimization: OptimizationConfig = dataclasses.field(default_factory=OptimizationConfig)
    execution: ExecutionConfig = dataclasses.field(default_factory=ExecutionConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)

    @classmethod
    def for_model(cls, model=ModelConfig.model, **settings):
        """A RunConfig for the model kind `model` with `settings` (named without their section) and, for the
        rest, the kind's own defaults (`tfvae.registry.MODELS`), then everyone's. A kind's default KL warm-up
        is a share of its default epochs, kept when `settings` change the epochs (`kind_warmup_epochs`)."""
        kind_defaults = dict(registry.MODELS[model].run_defaults) if model in registry.MODELS else {}
        if "warmup_epochs" in kind_defaults and "warmup_epochs" not in settings:
            kind_defaults["warmup_epochs"] = kind_warmup_epochs(kind_defaults, settings)
        return cls.from_flat(**{**kind_defaults, **settings, "model": model})

    @classmethod
    def from_flat(cls, **settings):
        """A RunConfig from settings named without their section (`epochs=5, latent_dim=2`), as the command line has them."""
        unknown = sorted(set(settings) - set(SECTION_OF))
        if unknown:
            raise RunError(f"Unknown run settings: {', '.join(unknown)}. Expected some of: {', '.join(SECTION_OF)}.")
        for name in ("latent_dims", "hidden_units"):
            if isinstance(settings.get(name), (list, tuple)):
                settings[name] = tuple(settings[name])  # JSON gives lists
        grouped = {section: {} for section in SECTIONS}
        for name, value in settings.items():
            grouped[SECTION_OF[name]][name] = value
        return cls(**{section: SECTIONS[section](**values) for section, values in grouped.items()})

    def flat(self):
        """{setting: value} over every section."""
        return {name: value for section in SECTIONS for name, value in dataclasses.asdict(getattr(self, section)).items()}

    def replace(self, **settings):
        """A copy with some settings (named without their section) changed."""
        return RunConfig.from_flat(**{**self.flat(), **settings})

    def to_json(self):
        """The settings as a JSON-ready dict, one section per concern, as `run_config.json` holds them (`from_json` reads it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        """From a `to_json` record, or from the flat record runs wrote before the sections; unknown keys are ignored
        (settings added since a run was written take their defaults)."""
        if not isinstance(data, dict):
            raise RunError(f"Expected a run configuration (a JSON object). Received: {type(data).__name__}")
        flat = {}
        for key, value in data.items():
            if key in SECTIONS and isinstance(value, dict):
                flat.update({name: v for name, v in value.items() if SECTION_OF.get(name) == key})
            elif key in SECTION_OF:
                flat[key] = value
        if not any(isinstance(data.get(section), dict) for section in SECTIONS):  # written before the sections
            if flat.get("kl") == "analytic":
                flat["kl"] = "auto"  # "analytic" was the default, which "auto" now is
            if flat.get("gradient_estimator") == "reparameterization":
                flat["gradient_estimator"] = None  # the default then, which the objective's own choice now is
            if flat.get("model") == "semi-supervised":
                flat["model"] = "m2"  # "semi-supervised" then named M2
            if flat.get("model") == "m2":
                flat.setdefault("alpha", 0.1)  # the default then
            else:
                flat.pop("alpha", None)  # recorded for every kind, used by none but M2
        return cls.from_flat(**flat)

    def validate(self):
        """Raises RunError naming the first setting that is out of range or does not fit the others."""
        try:
            self._validate()
        except RunError:
            raise
        except ValueError as error:
            raise RunError(str(error)) from None
        return self

    def _validate(self):
        data, model, optimization, execution, output = (self.data, self.model, self.optimization, self.execution,
                                                        self.output)
        if not (model.hidden_units is None or isinstance(model.hidden_units, tuple)):
            raise RunError(f"Expected hidden_units to be a tuple of ints, e.g. (400, 400). Received: "
                           f"hidden_units={model.hidden_units!r}")
        for name, value, minimum in (
            ("latent_dim", model.latent_dim, 1), ("num_samples", model.num_samples, 1), ("epochs", optimization.epochs, 1),
            ("batch_size", optimization.batch_size, 1), ("steps_per_execution", execution.steps_per_execution, 1),
            ("warmup_epochs", optimization.warmup_epochs, 0), ("log_likelihood_samples", output.log_likelihood_samples, 0),
            ("m1_epochs", optimization.m1_epochs, 1),
            *(("latent_dims", units, 1) for units in model.latent_dims),
            *(("hidden_units", units, 1) for units in model.hidden_units or ()),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise RunError(f"Expected {name} >= {minimum}. Received: {name}={value!r}")
        if not (isinstance(optimization.learning_rate, (int, float)) and optimization.learning_rate > 0):
            raise RunError(f"Expected learning_rate > 0. Received: learning_rate={optimization.learning_rate!r}")
        for name, value in (("beta", model.beta), ("alpha", model.alpha),
                            ("class_consistency_weight", model.class_consistency_weight)):
            if not (isinstance(value, (int, float)) and value >= 0):
                raise RunError(f"Expected {name} >= 0. Received: {name}={value!r}")
        if not (isinstance(model.prior_draw_weight, (int, float)) and 0 <= model.prior_draw_weight < 1):
            raise RunError(f"Expected prior_draw_weight in [0, 1). Received: prior_draw_weight={model.prior_draw_weight!r}")
        for name, value, choices in (
            ("model", model.model, names.MODELS), ("prior", model.prior, names.PRIORS),
            ("posterior", model.posterior, names.POSTERIORS), ("likelihood", model.likelihood, names.LIKELIHOODS),
            ("architecture", model.architecture, names.ARCHITECTURES), ("kl", model.kl, names.KL_ESTIMATORS),
            ("bound_weighting", model.bound_weighting, names.BOUND_WEIGHTINGS), ("precision", execution.precision, PRECISIONS),
            ("recognition_update", model.recognition_update, names.RECOGNITION_UPDATES),
            ("latent_type", model.latent_type, names.LATENT_TYPES),
            ("strategy", execution.strategy, names.STRATEGIES), ("binarize", data.binarize, names.BINARIZATIONS),
        ):
            names.check_choice(name, value, choices)
        names.check_objective(model.objective, model.gradient_estimator, model.num_samples)
        if optimization.warmup_epochs:
            names.check_warmup_applies(model.objective)
        flat = self.flat()
        changed = [name for name in KIND_SETTINGS if flat[name] != default(name)]
        check_applies(model.model, changed)
        if model.hidden_units is not None and model.architecture != "mlp":
            raise RunError(f"--hidden-units sizes the MLP's dense layers, not --architecture {model.architecture}'s. "
                           "Leave --hidden-units out, or train --architecture mlp.")
        if data.labeled_examples is not None and (
                isinstance(data.labeled_examples, bool) or not isinstance(data.labeled_examples, int)
                or data.labeled_examples < 1):
            raise RunError(f"Expected labeled_examples >= 1. Received: labeled_examples={data.labeled_examples!r}")
        if data.missing is not None:
            from tfvae.masks import missing_probability

            try:
                missing_probability(data.missing)
            except ValueError as error:
                raise RunError(str(error).replace("missing=", "--missing ")) from None


def read_run_config(path):
    """The `RunConfig` in the `run_config.json` at `path`; a RunError says why it cannot be read."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise RunError(f"The run's settings in {path} cannot be read ({error}).") from None
    return RunConfig.from_json(data)


def run_config_beside(model_path):
    """The `RunConfig` of the run directory `model_path`, or None for a model file (which carries none)."""
    path = pathlib.Path(model_path) / "run_config.json"
    return read_run_config(path) if path.is_file() else None


def data_source_for(model_path, dataset=None, data_dir=None):
    """(dataset, data_dir) to read for the model at `model_path`: those given; else, for a run directory, the ones
    its run trained on; else `tfvae train`'s defaults. Warns when a given dataset is not the run's own."""
    run_config = run_config_beside(model_path)
    if run_config is None:
        return dataset or default("dataset"), data_dir
    trained_on = run_config.data
    if dataset is None or dataset == trained_on.dataset:
        return trained_on.dataset, trained_on.data_dir if data_dir is None else data_dir
    logger.warning("Reading %s; the run in %s trained on %s.", dataset, model_path, trained_on.dataset)
    return dataset, data_dir
