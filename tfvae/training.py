"""Training runs: `RunConfig` (`tfvae.config`) says what to train, `train(config)` does it and writes every output.

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

from tfvae import allocator, checkpoints, evaluation, export, images, precision, registry, run_directory, strategies
from tfvae.callbacks import DivergenceGuard, KLWarmup, TensorBoardImages
from tfvae.checkpoints import load_model  # noqa: F401 -- tfvae.training.load_model stays available
from tfvae.config import RESUME_SETTINGS, RunConfig, default, read_run_config  # noqa: F401 -- tfvae.training.RunConfig stays available
from tfvae.data import load_dataset
from tfvae.errors import OutputNotWritable, RunError, TrainingDiverged, TrainingInterrupted

logger = logging.getLogger("tfvae")

# The pictures a run writes into its folder, each as <name>.png.
RUN_PICTURES = ("samples", "reconstructions")


@dataclasses.dataclass
class RunResult:
    """What `train` returns: the trained `model`, Keras's `history`, the final held-out `metrics` (those of
    `metrics.json`) and the SavedModel's `export_path` (None when not exported)."""
    model: keras.Model
    history: dict
    metrics: dict
    export_path: pathlib.Path | None


def _check_resumable(config, output_dir):
    saved_path = output_dir / "run_config.json"
    if not saved_path.exists():
        raise RunError(f"Nothing to resume in {output_dir}: it has no run_config.json. Start the run without --resume.")
    try:
        saved = read_run_config(saved_path).flat()  # settings added since the run was written take their defaults
    except RunError as error:
        raise RunError(f"{error} The run cannot be resumed safely. Start a new run in another --output-dir.") from None
    asked = config.flat()
    changed = [f"{key}: {saved[key]!r} -> {asked[key]!r}" for key in RESUME_SETTINGS if saved[key] != asked[key]]
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
    if config.output.export_dir == "":
        return None
    return pathlib.Path(config.output.export_dir or os.path.join("saved_models", config.data.dataset))


def build_model(config, info, missing_data=False, **trained_parts):
    """The model described by `config` for the data `info` describes, compiled (call inside the strategy's scope).

    The kind comes from `tfvae.registry.MODELS`; `missing_data` builds a model that takes images with missing
    (NaN) pixels; `trained_parts` are models a kind is built on (M1+M2's `m1`).
    """
    model_class = registry.lookup("model", config.model.model)
    model = model_class.from_run_config(config.model, info, seed=config.optimization.seed, missing_data=missing_data,
                                        **trained_parts)
    model.compile(
        optimizer=model.default_optimizer(config.optimization.learning_rate),
        jit_compile=config.execution.jit_compile,
        steps_per_execution=config.execution.steps_per_execution,
    )
    return model


def train(config, resume=False, callbacks=(), verbose=1):
    """Trains, evaluates and exports the model that `config` (a `tfvae.config.RunConfig`) describes; returns a `RunResult`.

    With `resume`, continues from the newest checkpoint in `config.output.output_dir`
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
    output_dir = pathlib.Path(config.output.output_dir)
    if resume and not output_dir.is_dir():
        raise RunError(f"Nothing to resume: {output_dir} does not exist. Start the run without --resume.")
    created = run_directory.missing_folders(output_dir, _export_dir(config))
    try:
        return _claim_and_train(config, resume, callbacks, verbose, output_dir, created)
    except BaseException:
        run_directory.remove_if_empty(created)  # a run refused at the door leaves no empty folders behind
        raise


def _claim_and_train(config, resume, callbacks, verbose, output_dir, created):
    """`train` once its output folders are known: checks every output location, locks the run's folder and trains.
    Adds the folders it creates to `created`."""
    run_directory.check_run_location(output_dir)
    keras.utils.set_random_seed(config.optimization.seed)
    strategy = strategies.make_strategy(config.execution.strategy)
    chief = strategies.is_chief(strategy)
    if chief:
        _check_run_pictures(output_dir)
    run_directory.check_writable(output_dir, "--output-dir")
    # Workers other than the chief keep their logs apart, so files are never written twice.
    log_dir = output_dir if chief else output_dir / "workers" / strategies.worker_name(strategy)
    if chief and _export_dir(config) is not None:
        run_directory.check_outside_checkpoints(_export_dir(config), "--export-dir", run_dir=output_dir)
        run_directory.check_writable(_export_dir(config), "--export-dir")
    created |= run_directory.missing_folders(log_dir)
    run_directory.check_writable(log_dir, "--output-dir")
    with run_directory.locked(log_dir, leave_no_trace=True):
        return _train_locked(config, resume, callbacks, verbose, strategy, output_dir, log_dir)


def _check_run_pictures(output_dir):
    """A run writes its pictures into its folder: a file of the same name that tfvae did not write is refused."""
    for picture in RUN_PICTURES:
        path = output_dir / f"{picture}.png"
        if run_directory.is_foreign_file(path, picture):
            raise OutputNotWritable(
                f"{output_dir} holds {path.name}, which is not a {picture} picture written by tfvae, and a run writes "
                "its own there. Move the file, or choose another --output-dir."
            )


def _load_data(config):
    """(training dataset, its DatasetInfo, held-out dataset, whether any pixel is missing) for the run."""
    data = config.data
    model_class = registry.lookup("model", config.model.model)
    options = {"name": data.dataset, "data_dir": data.data_dir, "download": data.download,
               "batch_size": config.optimization.batch_size, "with_labels": model_class.run_uses_labels}
    train_data, info = load_dataset(
        split=data.train_split,
        binarize=data.binarize,
        seed=config.optimization.seed,
        drop_remainder=True,  # one static batch shape: XLA compiles the step once
        return_info=True,
        labeled_examples=data.labeled_examples,
        missing=data.missing,
        **options,
    )
    eval_binarize = "static" if data.binarize else None
    eval_data, eval_info = load_dataset(split=data.eval_split, binarize=eval_binarize, shuffle=False, return_info=True,
                                        **options)
    if model_class.run_uses_labels and not model_class.allows_unlabeled:
        for split, split_info in ((data.train_split, info), (data.eval_split, eval_info)):
            unlabeled = split_info.num_examples - split_info.num_labeled
            if unlabeled:
                raise RunError(
                    f"The split {split!r} of {data.dataset} has {unlabeled} of its {split_info.num_examples} examples "
                    f"unlabeled (label -1), but --model {config.model.model} needs a label for every image. Train "
                    "--model semi-supervised (or m2) to learn from unlabeled images too, or remove them from the data."
                )
    if tuple(eval_info.image_shape) != tuple(info.image_shape):
        raise RunError(
            f"The held-out split {data.eval_split!r} of {data.dataset} holds images of shape {tuple(eval_info.image_shape)}, "
            f"the training split {data.train_split!r} images of shape {tuple(info.image_shape)}: a model takes one shape. "
            "Choose splits of the same images."
        )
    if info.missing_share >= 1:
        raise RunError(
            f"Every pixel of the split {data.train_split!r} of {data.dataset} is missing (NaN): nothing to learn from. "
            "Check the data, or choose another --train-split."
        )
    unseen = sorted(set(eval_info.classes) - set(info.classes))
    if model_class.run_uses_labels and unseen:
        raise RunError(
            f"The held-out split {data.eval_split!r} has classes the training split {data.train_split!r} never shows "
            f"({', '.join(map(str, unseen))}; training has {', '.join(map(str, info.classes))}): a model of labels "
            "learns only the classes it trains on. Choose splits that hold the same classes."
        )
    missing_data = max(info.missing_share, eval_info.missing_share) > 0
    if missing_data:
        logger.info("Missing pixels: %.1f%% of the training split; bounds count observed pixels only.",
                    100 * info.missing_share)
    if info.num_examples < config.optimization.batch_size:
        raise RunError(
            f"The split {data.train_split!r} has {info.num_examples} examples, fewer than one batch "
            f"(batch_size={config.optimization.batch_size}). Lower --batch-size or use a larger split."
        )
    return train_data, info, eval_data, missing_data


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
    train_data, info, eval_data, missing_data = _load_data(config)  # the data's problems before any training
    execution = config.execution
    with strategy.scope(), precision.precision(execution.precision):
        latest = checkpoints.load_latest(checkpoint_dir) if resume else None
    if latest is not None:  # a checkpoint holds the whole model, M1 of M1+M2 included
        model, initial_epoch = latest
        model.configure_execution(execution.jit_compile, execution.steps_per_execution)
    else:
        trained_parts = {}
        if registry.lookup("model", config.model.model).pretrains_image_model:
            trained_parts["m1"] = _train_image_model(config, output_dir, verbose)
        with strategy.scope(), precision.precision(execution.precision):
            model = build_model(config, info, missing_data, **trained_parts)
        initial_epoch = 0
    # What the run does, as fit will fit it: no more steps per execution than an epoch has.
    steps_per_epoch = int(train_data.cardinality())
    if 0 < steps_per_epoch < execution.steps_per_execution:
        config = config.replace(steps_per_execution=steps_per_epoch)
    if chief:
        checkpoints.write_json_atomically(output_dir / "run_config.json", config.to_json())
        _keep_metrics_rows(output_dir / "metrics.csv", initial_epoch)

    guard = DivergenceGuard(
        learned_scale=config.model.likelihood == "gaussian" and config.model.gaussian_scale == "learned",
        reference_batch=next(iter(train_data)),
    )
    run_callbacks = [guard]
    if config.optimization.warmup_epochs:
        run_callbacks.append(KLWarmup(config.optimization.warmup_epochs, target=config.model.beta))
    if multi_worker:
        backup_dir = output_dir / "backup" / strategies.worker_name(strategy)
        run_callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
        initial_epoch = max(initial_epoch, _backed_up_epoch(backup_dir))
    seed, epochs = config.optimization.seed, config.optimization.epochs
    run_callbacks += [
        checkpoints.AtomicCheckpoint(checkpoint_dir, is_writer=chief, skip_epoch=lambda: guard.message is not None),
        keras.callbacks.CSVLogger(str(log_dir / "metrics.csv"), append=initial_epoch > 0),
        keras.callbacks.TensorBoard(log_dir=str(log_dir / "logs")),
        *([TensorBoardImages(log_dir / "logs", *evaluation.collect(eval_data, 256), seed=seed)] if chief else []),
        *callbacks,
    ]
    history = {}
    if initial_epoch >= epochs:
        logger.info("All %d epochs of the run in %s are done; nothing left to train. It is evaluated%s again. "
                    "Pass a larger --epochs to train further.", initial_epoch, output_dir,
                    "" if _export_dir(config) is None else " and exported")
    else:
        try:
            with run_directory.writing(
                f"the training outputs in {output_dir}",
                " The checkpoints of earlier epochs are intact; run the same command with --resume to continue.",
            ):
                history = model.fit(
                    train_data,
                    validation_data=eval_data,
                    epochs=epochs,
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
    try:
        return finish_run(model, config, eval_data, history, output_dir if chief else None)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"Interrupted after training, during the final evaluation or export. Training is complete and its "
            f"checkpoints are in {checkpoint_dir}: `tfvae evaluate {output_dir}` and `tfvae export {output_dir}` finish "
            "the rest (or run the same command with --resume)."
        ) from None


def _train_image_model(config, output_dir, verbose):
    """Stage one of M1+M2: the VAE M1, trained on every training image (no labels, freshly binarized each
    epoch, as a VAE trains by default) as its own run in `output_dir`/m1 (resumed there when the run is), for
    `m1_epochs` epochs; returns the trained model."""
    m1_dir = output_dir / "m1"
    settings = {name: default(name) for name in ("alpha", "bound_weighting", "m1_epochs", "labeled_examples", "binarize")}
    m1_config = config.replace(model="vae", epochs=config.optimization.m1_epochs, output_dir=str(m1_dir), export_dir="",
                               log_likelihood_samples=0, **settings)
    logger.info("M1+M2, stage 1: the VAE M1 on every training image, %d epochs, in %s.", m1_config.optimization.epochs,
                m1_dir)
    return train(m1_config, resume=run_directory.holds_run(m1_dir), verbose=verbose).model


def _backed_up_epoch(backup_dir):
    """The epoch a `BackupAndRestore` backup will resume from (0 without one)."""
    try:
        return int(json.loads((backup_dir / "training_metadata.json").read_text())["epoch"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def finish_run(model, config, eval_data, history, output_dir):
    """Held-out metrics, image grids and the SavedModel; only the chief (`output_dir` set) writes."""
    seed = config.optimization.seed
    held_out, labels = evaluation.collect(eval_data)
    metrics = evaluation.evaluate(model, held_out, config.output.log_likelihood_samples, seed=seed, labels=labels)
    if output_dir is None:
        return RunResult(model, history, metrics, None)
    checkpoints.write_json_atomically(output_dir / "metrics.json", metrics)
    with run_directory.writing(f"the image grids in {output_dir}"):
        images.save_samples(model, output_dir / f"{RUN_PICTURES[0]}.png", seed=seed)
        images.save_reconstructions(model.image_model(), held_out[:32], output_dir / f"{RUN_PICTURES[1]}.png",
                                    labels=None if labels is None else labels[:32])
    export_path = None
    if _export_dir(config) is not None:
        export_path = export.export_saved_model(model, _export_dir(config), run_config=config.to_json(),
                                                dataset=config.data.dataset, option="--export-dir")
    return RunResult(model, history, metrics, export_path)
