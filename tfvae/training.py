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

import dataclasses
import json
import os
import pathlib
import tempfile

import keras

from tfvae import allocator, checkpoints, evaluation, export, images, strategies
from tfvae.callbacks import DivergenceGuard, KLWarmup, TrainingDiverged
from tfvae.data import load_dataset
from tfvae.model import VAE

# Settings a resumed run must share with the run it continues (they shape the model or its data).
MODEL_SETTINGS = ("dataset", "train_split", "architecture", "latent_dim", "likelihood", "gaussian_scale", "kl", "num_samples")


class RunError(ValueError):
    """A run that cannot start as asked: the message names the setting and the fix."""


class TrainingInterrupted(RuntimeError):
    """Training stopped by Ctrl-C; the last complete checkpoint is kept for `--resume`."""


@dataclasses.dataclass
class RunConfig:
    """Everything a training run needs; written as `run_config.json` beside its outputs."""

    dataset: str = "mnist"
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
    num_samples: int = 1  # L: one sample per example suffices with batch >= 100 (Kingma & Welling)
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta: float = 1.0
    warmup_epochs: int = 0  # > 0: KL warm-up from β=0 to `beta` over this many epochs
    seed: int = 0
    jit_compile: bool = True  # XLA; Keras's "auto" would turn it off on CPU
    steps_per_execution: int = 16  # steps per call into the compiled function: fit's per-step overhead was ~20% of the MLP step
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


def _check_writable(directory):
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise RunError(
            f"The output directory {directory} is not writable ({error.strerror}). "
            "Choose another --output-dir."
        ) from None


def _check_resumable(config, output_dir):
    saved_path = output_dir / "run_config.json"
    if not saved_path.exists():
        raise RunError(f"Nothing to resume in {output_dir}: it has no run_config.json. Start the run without --resume.")
    saved = json.loads(saved_path.read_text())
    changed = [f"{key}: {saved.get(key)!r} -> {getattr(config, key)!r}" for key in MODEL_SETTINGS if saved.get(key) != getattr(config, key)]
    if changed:
        raise RunError(
            f"Cannot resume the run in {output_dir} with different model settings ({'; '.join(changed)}). "
            "Use the original settings, or start a new run in another --output-dir."
        )


def build_model(config, image_shape):
    """The VAE described by `config`, compiled (call inside the strategy's scope)."""
    vae = VAE.for_images(
        image_shape,
        latent_dim=config.latent_dim,
        architecture=config.architecture,
        likelihood=config.likelihood,
        gaussian_scale=config.gaussian_scale,
        beta=config.beta,
        kl=config.kl,
        num_samples=config.num_samples,
        seed=config.seed,
    )
    vae.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return vae


def train(config, resume=False, callbacks=(), verbose=1):
    """Trains, evaluates and exports the VAE that `config` describes; returns a `RunResult`.

    With `resume`, continues from the last complete checkpoint in
    `config.output_dir` (same epoch count, optimizer state kept). Under the
    multi-worker strategy every worker runs this same call; Keras's
    `BackupAndRestore` lets a restarted job continue from its last backup.
    It caps glibc's malloc arenas (`tfvae.allocator`) so memory stays flat.
    """
    config.validate()
    allocator.cap_malloc_arenas()  # resident memory flat from epoch to epoch
    output_dir = pathlib.Path(config.output_dir)
    _check_writable(output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    keras.utils.set_random_seed(config.seed)
    strategy = strategies.make_strategy(config.strategy)
    multi_worker = strategies.is_multi_worker(strategy)
    chief = strategies.is_chief(strategy)
    if resume:
        _check_resumable(config, output_dir)
    elif not multi_worker and checkpoints.latest_checkpoint(checkpoint_dir) is not None:
        raise RunError(
            f"{output_dir} already holds a run. Continue it with --resume, or choose another --output-dir."
        )
    data_options = {"name": config.dataset, "data_dir": config.data_dir, "download": config.download, "batch_size": config.batch_size}
    train_data, info = load_dataset(
        split=config.train_split,
        binarize=config.binarize,
        seed=config.seed,
        drop_remainder=True,  # one static batch shape: XLA compiles the step once
        return_info=True,
        **data_options,
    )
    eval_binarize = "static" if config.binarize else None
    eval_data = load_dataset(split=config.eval_split, binarize=eval_binarize, shuffle=False, **data_options)
    if info.num_examples < config.batch_size:
        raise RunError(
            f"The split {config.train_split!r} has {info.num_examples} examples, fewer than one batch "
            f"(batch_size={config.batch_size}). Lower --batch-size or use a larger split."
        )

    config = dataclasses.replace(
        config,
        jit_compile=strategies.resolve_jit_compile(config.jit_compile, strategy),
        steps_per_execution=strategies.resolve_steps_per_execution(config.steps_per_execution, strategy),
    )
    latest = checkpoints.latest_checkpoint(checkpoint_dir) if resume else None
    with strategy.scope():
        if latest is not None:
            vae = keras.models.load_model(latest[0])
            vae.jit_compile = config.jit_compile
            vae.steps_per_execution = config.steps_per_execution
            initial_epoch = latest[1]
        else:
            vae = build_model(config, info.image_shape)
            initial_epoch = 0
    if chief:
        checkpoints.write_json_atomically(output_dir / "run_config.json", config.to_json())

    guard = DivergenceGuard()
    # Workers other than the chief keep their logs apart, so files are never written twice.
    log_dir = output_dir if chief else output_dir / "workers" / strategies.worker_name(strategy)
    log_dir.mkdir(parents=True, exist_ok=True)
    run_callbacks = [guard]
    if config.warmup_epochs:
        run_callbacks.append(KLWarmup(config.warmup_epochs, target=config.beta))
    if multi_worker:
        backup_dir = output_dir / "backup" / strategies.worker_name(strategy)
        run_callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
        initial_epoch = max(initial_epoch, _backed_up_epoch(backup_dir))
    run_callbacks += [
        checkpoints.AtomicCheckpoint(checkpoint_dir, is_writer=chief),
        keras.callbacks.CSVLogger(str(log_dir / "metrics.csv"), append=initial_epoch > 0),
        keras.callbacks.TensorBoard(log_dir=str(log_dir / "logs")),
        *callbacks,
    ]
    history = {}
    if initial_epoch < config.epochs:
        try:
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
        raise TrainingDiverged(guard.message)
    return finish_run(vae, config, eval_data, history, output_dir if chief else None)


def _backed_up_epoch(backup_dir):
    """The epoch a `BackupAndRestore` backup will resume from (0 without one)."""
    try:
        return int(json.loads((backup_dir / "training_metadata.json").read_text())["epoch"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def finish_run(vae, config, eval_data, history, output_dir):
    """Held-out metrics, image grids and the SavedModel; only the chief (`output_dir` set) writes."""
    held_out = evaluation.collect_images(eval_data)
    metrics = evaluation.evaluate(vae, held_out, config.log_likelihood_samples, seed=config.seed)
    if output_dir is None:
        return RunResult(vae, history, metrics, None)
    checkpoints.write_json_atomically(output_dir / "metrics.json", metrics)
    images.save_samples(vae, output_dir / "samples.png", seed=config.seed)
    images.save_reconstructions(vae, held_out[:32], output_dir / "reconstructions.png")
    export_path = None
    if config.export_dir != "":
        export_dir = config.export_dir or os.path.join("saved_models", config.dataset)
        export_path = export.export_saved_model(vae, export_dir, run_config=config.to_json(), dataset=config.dataset)
    return RunResult(vae, history, metrics, export_path)


def load_model(path):
    """A trained VAE from a `.keras` checkpoint, or from a run directory (its latest checkpoint).

    Importing this module registers tfvae's classes with Keras; `keras.models.load_model`
    works too once any tfvae model module is imported.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        latest = checkpoints.latest_checkpoint(path / "checkpoints") or checkpoints.latest_checkpoint(path)
        if latest is None:
            raise RunError(f"{path} holds no checkpoint. Expected a run directory or a .keras file.")
        path = latest[0]
    if not path.is_file() or path.suffix != ".keras":
        raise RunError(f"{path} is not a .keras checkpoint or a run directory.")
    return keras.models.load_model(path)

