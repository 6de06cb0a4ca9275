"""Training runs: `RunConfig` says what to train, `train(config)` does it and writes every output.

Outputs in `config.output_dir`:
  run_config.json                 the settings of the run
  checkpoints/epoch-NNNN.keras    model + optimizer after each epoch (atomic), latest.json
  logs/                           TensorBoard logs
  metrics.csv                     per-epoch training and validation metrics
  samples.png, reconstructions.png
  metrics.json                    final held-out elbo, reconstruction, kl, log_likelihood (nats)
and the SavedModel under `<export_dir>/<version>/`.
"""

import csv
import dataclasses
import json
import logging
import os
import pathlib

import keras

from tfvae import allocator, checkpoints, evaluation, export, images, masks, objectives, precision, run_directory, strategies
from tfvae.callbacks import DivergenceGuard, KLWarmup, TensorBoardImages
from tfvae.checkpoints import load_model  # noqa: F401 -- tfvae.training.load_model stays available
from tfvae.conditional import ConditionalVAE
from tfvae.data import load_dataset
from tfvae.errors import RunError, TrainingDiverged, TrainingInterrupted
from tfvae.model import VAE
from tfvae.names import BOUND_WEIGHTINGS, MODELS
from tfvae.semi_supervised import SemiSupervisedVAE

logger = logging.getLogger("tfvae")

# Settings a resumed run must share with the run it continues (they shape the model or its data).
MODEL_SETTINGS = (
    "dataset", "train_split", "architecture", "latent_dim", "likelihood", "gaussian_scale", "kl", "num_samples", "precision",
    "objective", "gradient_estimator", "model", "labeled_examples", "alpha", "bound_weighting", "missing",
)


@dataclasses.dataclass
class RunConfig:
    """Everything a training run needs; written as `run_config.json` beside its outputs."""

    model: str = "vae"  # or "conditional", "semi-supervised" (tfvae.names.MODELS)
    labeled_examples: int | None = None  # semi-supervised: labels kept, class-balanced; None keeps every label
    alpha: float = 0.1  # semi-supervised: weight of the classification loss (Kingma et al. 2014)
    bound_weighting: str = "data"  # semi-supervised: how labelled and unlabelled bounds add up (SemiSupervisedVAE)
    dataset: str = "mnist"
    missing: str | None = None  # "random:P": hide each training pixel with probability P (tfvae.masks.hide_at_random)
    train_split: str = "train"
    eval_split: str = "test"
    data_dir: str | None = None
    download: bool = True  # False: never touch the network for data
    binarize: str | None = "dynamic"  # evaluation always uses a fixed-seed ("static") binarization
    architecture: str = "mlp"
    latent_dim: int = 20  # Kingma & Welling's MNIST experiments use 2 to 200
    likelihood: str = "bernoulli"
    gaussian_scale: float | str = 0.1
    kl: str = "analytic"
    num_samples: int = 1  # L (or K for "iwae"): one sample per example suffices for the ELBO with batch >= 100 (Kingma & Welling)
    objective: str = "elbo"  # or "iwae" (Burda et al. 2015), see tfvae.objectives
    gradient_estimator: str = "reparameterization"  # or "score_function", "doubly_reparameterized", "vimco"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta: float = 1.0
    warmup_epochs: int = 0  # > 0: KL warm-up from β=0 to `beta` over this many epochs
    seed: int = 0
    jit_compile: bool | str = "auto"  # "auto": tfvae.strategies.choose_jit_compile decides (XLA for dense models on CPU, always on GPU/TPU)
    steps_per_execution: int = 16  # steps per call into the compiled function: fit's per-step overhead was ~20% of the MLP step
    precision: str = "float32"  # or "mixed_bfloat16" / "mixed_float16" (tfvae.precision)
    strategy: str = "auto"
    log_likelihood_samples: int = 1000  # K for the importance-sampled log p(x) in metrics.json; 0 skips it
    output_dir: str = "runs/latest"
    export_dir: str | None = None  # default: saved_models/<dataset>; "" skips the export

    def validate(self):
        positive = ("latent_dim", "num_samples", "epochs", "batch_size", "steps_per_execution")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise RunError(f"Expected {name} >= 1. Received: {name}={value!r}")
        for name in ("warmup_epochs", "log_likelihood_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise RunError(f"Expected {name} >= 0. Received: {name}={value!r}")
        if not self.learning_rate > 0:
            raise RunError(f"Expected learning_rate > 0. Received: learning_rate={self.learning_rate!r}")
        if not self.beta >= 0:
            raise RunError(f"Expected beta >= 0. Received: beta={self.beta!r}")
        precision.check_precision(self.precision)
        if self.model not in MODELS:
            raise RunError(f"Unknown model {self.model!r}. Expected one of {', '.join(MODELS)}.")
        if self.labeled_examples is not None:
            if self.model != "semi-supervised":
                raise RunError(
                    f"labeled_examples applies to the semi-supervised model; the {self.model!r} model uses "
                    f"{'every label' if self.model == 'conditional' else 'no labels'}. Add --model semi-supervised."
                )
            if not isinstance(self.labeled_examples, int) or self.labeled_examples < 1:
                raise RunError(f"Expected labeled_examples >= 1. Received: labeled_examples={self.labeled_examples!r}")
        if not self.alpha >= 0:
            raise RunError(f"Expected alpha >= 0. Received: alpha={self.alpha!r}")
        if self.bound_weighting not in BOUND_WEIGHTINGS:
            raise RunError(
                f"Expected bound_weighting in {BOUND_WEIGHTINGS}. "
                f"Received: bound_weighting={self.bound_weighting!r}"
            )
        if self.bound_weighting != RunConfig.bound_weighting and self.model != "semi-supervised":
            raise RunError("--bound-weighting applies to the semi-supervised model. Add --model semi-supervised.")
        if self.missing is not None:
            try:
                masks.missing_probability(self.missing)
            except ValueError as error:
                raise RunError(str(error).replace("missing=", "--missing ")) from None
            if self.model == "semi-supervised":
                raise RunError("--missing applies to --model vae or conditional: M2's classifier needs whole images.")
        objectives.check_objective(self.objective, self.gradient_estimator, self.num_samples)
        return self

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclasses.dataclass
class RunResult:
    model: VAE
    history: dict
    metrics: dict
    export_path: pathlib.Path | None


def _check_resumable(config, output_dir):
    saved_path = output_dir / "run_config.json"
    if not saved_path.exists():
        raise RunError(f"Nothing to resume in {output_dir}: it has no run_config.json. Start the run without --resume.")
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError) as error:
        raise RunError(
            f"The run's settings in {saved_path} cannot be read ({error}); the run cannot be resumed safely. "
            "Start a new run in another --output-dir."
        ) from None
    saved = RunConfig.from_json(saved).to_json()  # settings added since the run was written take their defaults
    changed = [f"{key}: {saved[key]!r} -> {getattr(config, key)!r}" for key in MODEL_SETTINGS if saved[key] != getattr(config, key)]
    if changed:
        raise RunError(
            f"Cannot resume the run in {output_dir} with different model settings ({'; '.join(changed)}). "
            "Use the original settings, or start a new run in another --output-dir."
        )


def _keep_metrics_rows(path, epochs):
    """Drops rows of `metrics.csv` past `epochs` completed epochs, so a resumed run appends no duplicates."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        return
    column = rows[0].index("epoch")
    kept = [rows[0]] + [row for row in rows[1:] if row and int(float(row[column])) < epochs]
    if len(kept) < len(rows):
        with run_directory.writing(path):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "w", newline="") as f:
                csv.writer(f).writerows(kept)
            os.replace(tmp, path)


def _export_dir(config):
    """Where the SavedModel goes, or None when the export is off."""
    if config.export_dir == "":
        return None
    return pathlib.Path(config.export_dir or os.path.join("saved_models", config.dataset))


def build_model(config, info, missing_data=False):
    """The model described by `config` for the data `info` describes, compiled (call inside the strategy's scope).

    `missing_data` builds a model that takes images with missing (NaN) pixels.
    """
    options = {
        "latent_dim": config.latent_dim,
        "architecture": config.architecture,
        "likelihood": config.likelihood,
        "gaussian_scale": config.gaussian_scale,
        "beta": config.beta,
        "kl": config.kl,
        "num_samples": config.num_samples,
        "objective": config.objective,
        "gradient_estimator": config.gradient_estimator,
        "seed": config.seed,
    }
    if config.model == "vae":
        vae = VAE.for_images(info.image_shape, missing_data=missing_data, **options)
    elif config.model == "conditional":
        vae = ConditionalVAE.for_images(info.image_shape, info.num_classes, missing_data=missing_data, **options)
    else:
        labeled = info.num_examples if config.labeled_examples is None else config.labeled_examples
        vae = SemiSupervisedVAE.for_images(
            info.image_shape, info.num_classes, alpha=config.alpha, labeled_fraction=labeled / info.num_examples,
            bound_weighting=config.bound_weighting, **options
        )
    vae.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return vae


def train(config, resume=False, callbacks=(), verbose=1):
    """Trains, evaluates and exports the VAE that `config` describes; returns a `RunResult`.

    With `resume`, continues from the newest checkpoint in `config.output_dir`
    that loads (same epoch count, optimizer state kept); damaged checkpoints
    are skipped with a warning. The run holds a lock on its output directory,
    so a second run there refuses to start. Every output location is checked
    for writability before any work. Under the multi-worker strategy every
    worker runs this same call; Keras's `BackupAndRestore` lets a restarted job
    continue from its last backup. It caps glibc's malloc arenas
    (`tfvae.allocator`) so memory stays flat.
    """
    config.validate()
    allocator.cap_malloc_arenas()  # resident memory flat from epoch to epoch
    output_dir = pathlib.Path(config.output_dir)
    if resume and not output_dir.is_dir():
        raise RunError(f"Nothing to resume: {output_dir} does not exist. Start the run without --resume.")
    run_directory.check_writable(output_dir, "--output-dir")
    keras.utils.set_random_seed(config.seed)
    strategy = strategies.make_strategy(config.strategy)
    chief = strategies.is_chief(strategy)
    # Workers other than the chief keep their logs apart, so files are never written twice.
    log_dir = output_dir if chief else output_dir / "workers" / strategies.worker_name(strategy)
    if chief and _export_dir(config) is not None:
        run_directory.check_writable(_export_dir(config), "--export-dir")
    run_directory.check_writable(log_dir, "--output-dir")
    with run_directory.locked(log_dir):
        return _train_locked(config, resume, callbacks, verbose, strategy, output_dir, log_dir)


def _train_locked(config, resume, callbacks, verbose, strategy, output_dir, log_dir):
    checkpoint_dir = output_dir / "checkpoints"
    multi_worker = strategies.is_multi_worker(strategy)
    chief = log_dir == output_dir
    if resume:
        _check_resumable(config, output_dir)
    elif not multi_worker and run_directory.holds_run(output_dir):
        raise RunError(
            f"{output_dir} already holds a run. Continue it with --resume, or choose another --output-dir."
        )
    data_options = {"name": config.dataset, "data_dir": config.data_dir, "download": config.download,
                    "batch_size": config.batch_size, "with_labels": config.model != "vae"}
    train_data, info = load_dataset(
        split=config.train_split,
        binarize=config.binarize,
        seed=config.seed,
        drop_remainder=True,  # one static batch shape: XLA compiles the step once
        return_info=True,
        labeled_examples=config.labeled_examples,
        missing=config.missing,
        **data_options,
    )
    eval_binarize = "static" if config.binarize else None
    eval_data, eval_info = load_dataset(split=config.eval_split, binarize=eval_binarize, shuffle=False, return_info=True,
                                        **data_options)
    missing_data = max(info.missing_share, eval_info.missing_share) > 0
    if missing_data and config.model == "semi-supervised":
        raise RunError(
            f"The data of {config.dataset!r} has missing (NaN) pixels; the semi-supervised model needs whole images. "
            "Train --model vae or conditional."
        )
    if missing_data:
        logger.info("Missing pixels: %.1f%% of the training split; bounds count observed pixels only.",
                    100 * info.missing_share)
    if info.num_examples < config.batch_size:
        raise RunError(
            f"The split {config.train_split!r} has {info.num_examples} examples, fewer than one batch "
            f"(batch_size={config.batch_size}). Lower --batch-size or use a larger split."
        )

    with strategy.scope(), precision.precision(config.precision):
        latest = checkpoints.load_latest(checkpoint_dir) if resume else None
        if latest is not None:
            vae, initial_epoch = latest
            vae.configure_execution(config.jit_compile, config.steps_per_execution)
        else:
            vae = build_model(config, info, missing_data)
            initial_epoch = 0
    # What the run does, as fit will fit it: no more steps per execution than an epoch has.
    steps_per_epoch = int(train_data.cardinality())
    if 0 < steps_per_epoch < config.steps_per_execution:
        config = dataclasses.replace(config, steps_per_execution=steps_per_epoch)
    if chief:
        checkpoints.write_json_atomically(output_dir / "run_config.json", config.to_json())
        _keep_metrics_rows(output_dir / "metrics.csv", initial_epoch)

    guard = DivergenceGuard(
        learned_scale=config.likelihood == "gaussian" and config.gaussian_scale == "learned",
        reference_batch=next(iter(train_data)),
    )
    run_callbacks = [guard]
    if config.warmup_epochs:
        run_callbacks.append(KLWarmup(config.warmup_epochs, target=config.beta))
    if multi_worker:
        backup_dir = output_dir / "backup" / strategies.worker_name(strategy)
        run_callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
        initial_epoch = max(initial_epoch, _backed_up_epoch(backup_dir))
    run_callbacks += [
        checkpoints.AtomicCheckpoint(checkpoint_dir, is_writer=chief, skip_epoch=lambda: guard.message is not None),
        keras.callbacks.CSVLogger(str(log_dir / "metrics.csv"), append=initial_epoch > 0),
        keras.callbacks.TensorBoard(log_dir=str(log_dir / "logs")),
        *([TensorBoardImages(log_dir / "logs", *evaluation.collect(eval_data, 256), seed=config.seed)]
          if strategies.is_chief(strategy) else []),
        *callbacks,
    ]
    history = {}
    if initial_epoch < config.epochs:
        try:
            with run_directory.writing(
                f"the training outputs in {output_dir}",
                " The checkpoints of earlier epochs are intact; run the same command with --resume to continue.",
            ):
                history = vae.fit(
                    train_data,
                    validation_data=eval_data,
                    epochs=config.epochs,
                    initial_epoch=initial_epoch,
                    callbacks=run_callbacks,
                    shuffle=False,  # the dataset reshuffles itself each epoch
                    verbose=verbose,
                ).history
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                f"Training was interrupted. The last complete checkpoint is in {checkpoint_dir}; "
                "run the same command with --resume to continue."
            ) from None
    if guard.message:
        raise TrainingDiverged(
            guard.message + f" Nothing was exported; checkpoints before the divergence are in {checkpoint_dir}."
        )
    return finish_run(vae, config, eval_data, history, output_dir if chief else None)


def _backed_up_epoch(backup_dir):
    """The epoch a `BackupAndRestore` backup will resume from (0 without one)."""
    try:
        return int(json.loads((backup_dir / "training_metadata.json").read_text())["epoch"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def finish_run(vae, config, eval_data, history, output_dir):
    """Held-out metrics, image grids and the SavedModel; only the chief (`output_dir` set) writes."""
    held_out, labels = evaluation.collect(eval_data)
    metrics = evaluation.evaluate(vae, held_out, config.log_likelihood_samples, seed=config.seed, labels=labels)
    if output_dir is None:
        return RunResult(vae, history, metrics, None)
    checkpoints.write_json_atomically(output_dir / "metrics.json", metrics)
    with run_directory.writing(f"the image grids in {output_dir}"):
        images.save_samples(vae, output_dir / "samples.png", seed=config.seed)
        images.save_reconstructions(vae, held_out[:32], output_dir / "reconstructions.png",
                                    labels=None if labels is None else labels[:32])
    export_path = None
    if _export_dir(config) is not None:
        export_path = export.export_saved_model(vae, _export_dir(config), run_config=config.to_json(), dataset=config.dataset)
    return RunResult(vae, history, metrics, export_path)
