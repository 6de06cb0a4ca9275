"""Per-epoch checkpoints that are never half-written, and loading the newest one that reads back.

A checkpoint is written aside and renamed into place; which checkpoints a run
has is decided by the `epoch-NNNN.keras` files themselves (`latest.json` is a
record for people and tools, not trusted), so a lost or damaged file costs at
most the epochs after the newest intact one.
"""

import json
import logging
import math
import os
import pathlib
import re
import zipfile

import keras
import numpy as np

from tfvae import registry
from tfvae._version import __version__
from tfvae.errors import DamagedCheckpoint, OutputNotWritable, RunError, UnloadableModel
from tfvae.run_directory import describe_os_error

logger = logging.getLogger("tfvae")

LATEST = "latest.json"
CHECKPOINT_NAME = re.compile(r"epoch-(\d+)\.keras")


def write_json_atomically(path, data):
    """Writes `data` as JSON to `path` so readers see the old file or the new one, never a mix."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise OutputNotWritable(f"Could not write {path}: {describe_os_error(error)}.") from None


def checkpoint_files(directory):
    """[(path, completed epochs)] of the `epoch-NNNN.keras` files in `directory`, newest first."""
    found = []
    for path in pathlib.Path(directory).glob("epoch-*.keras"):
        match = CHECKPOINT_NAME.fullmatch(path.name)
        if match and path.is_file():
            found.append((path, int(match.group(1))))
    return sorted(found, key=lambda item: item[1], reverse=True)


def damage(path):
    """Why the `.keras` file at `path` cannot be read back, or None if its archive is whole.

    Reads every member and checks its CRC, so truncation and corrupt bytes are both found.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            corrupt = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        return f"not a readable .keras archive ({error})"
    if corrupt is not None:
        return f"corrupt bytes in its member {corrupt}"
    if "config.json" not in names:
        return "no model configuration (config.json) inside"
    return None


def latest_checkpoint(directory):
    """(path, completed epochs) of the newest checkpoint in `directory` whose archive is whole, or None.

    Damaged files are skipped with a warning that names them and the reason.
    """
    for path, epoch in checkpoint_files(directory):
        reason = damage(path)
        if reason is None:
            return path, epoch
        logger.warning("Skipped the checkpoint %s: %s.", path, reason)
    return None


def _version_tuple(version):
    return tuple(int(part) for part in re.findall(r"\d+", str(version))[:3])


def _check_loadable(path):
    """Raises, naming the reason, unless the intact `.keras` file at `path` holds a model this tfvae can load
    (read from its config.json, before anything is built)."""
    with zipfile.ZipFile(path) as archive:
        try:
            config = json.loads(archive.read("config.json"))
        except ValueError as error:
            raise DamagedCheckpoint(f"{path} is damaged: its model configuration is not JSON ({error}).") from None
    registered = str(config.get("registered_name") or config.get("class_name"))
    package, _, class_name = registered.rpartition(">")
    if package != "tfvae":
        raise UnloadableModel(
            f"{path} holds a Keras model of class {config.get('class_name')}, not a tfvae model. "
            "Pass a checkpoint written by tfvae (a run directory or its checkpoints/epoch-NNNN.keras)."
        )
    written = (config.get("config") or {}).get("tfvae_version")
    if written and _version_tuple(written) > _version_tuple(__version__):
        raise UnloadableModel(
            f"{path} was saved by a newer tfvae ({written}) than this one ({__version__}). "
            "Upgrade tfvae to load it: pip install --upgrade tfvae."
        )
    if class_name not in {entry.attribute for entry in registry.MODELS.values()}:
        raise UnloadableModel(
            f"{path} holds a tfvae model of class {class_name}, which this tfvae ({__version__}) does not have. "
            f"Known models: {', '.join(entry.attribute for entry in registry.MODELS.values())}."
        )


def _load_keras_file(path):
    _check_loadable(path)
    registry.import_all()  # every tfvae class registers itself with Keras where it is defined
    try:
        return keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001 -- the archive is whole, so this is not damage: say what failed
        raise UnloadableModel(
            f"{path} is an intact tfvae file that cannot be loaded ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:300]})."
        ) from None


def load_checkpoint(path):
    """The tfvae model in the `.keras` file at `path`; a damaged file or a non-tfvae model raises with the cause."""
    path = pathlib.Path(path)
    if not path.is_file() or path.suffix != ".keras":
        raise RunError(f"{path} is not a .keras checkpoint or a run directory.")
    reason = damage(path)
    if reason is not None:
        raise DamagedCheckpoint(
            f"{path} is damaged: {reason}. Use an earlier checkpoint of the run, or its run directory "
            "(the newest intact checkpoint is then chosen)."
        )
    return _load_keras_file(path)


def load_latest(directory):
    """(model, completed epochs) from the newest checkpoint in `directory` that loads, or None if it has none.

    Checkpoints that fail to load are skipped with a warning; if every one fails, raises `DamagedCheckpoint`.
    """
    candidates = checkpoint_files(directory)
    problems = []
    for path, epoch in candidates:
        try:
            model = load_checkpoint(path)
        except DamagedCheckpoint as error:
            problems.append((path, str(error)))
            continue
        for skipped, reason in problems:  # said once: here, or in the error below when none loads
            logger.warning("Skipped the checkpoint %s: %s", skipped.name, reason)
        return model, epoch
    if candidates:
        raise DamagedCheckpoint(
            f"None of the {len(candidates)} checkpoints in {directory} can be loaded:\n  - "
            + "\n  - ".join(reason for _, reason in problems)
            + "\nStart a new run in another --output-dir."
        )
    return None


def load_model(path):
    """A trained tfvae model from a `.keras` checkpoint, or from a run directory (its newest intact checkpoint).

    Every tfvae model class registers itself with Keras where it is defined, so after
    `import tfvae.models`, `keras.models.load_model` loads tfvae files too; this function
    imports every registered part first (`tfvae.registry`), adds the fallback past damaged
    checkpoints, and says why a file that is whole cannot be loaded (not a tfvae model,
    saved by a newer tfvae, ...).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise RunError(f"{path} does not exist. Expected a run directory or a .keras checkpoint.")
    if path.is_dir():
        found = load_latest(path / "checkpoints") or load_latest(path)
        if found is None:
            raise RunError(f"{path} holds no checkpoint. Expected a run directory or a .keras file.")
        return found[0]
    return load_checkpoint(path)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves model + optimizer as `epoch-NNNN.keras` after every epoch, keeping the last `keep`.

    The file is written under a temporary name and renamed when complete; only
    then does `latest.json` point at it. A run killed at any moment, or stopped
    by a full disk, leaves the previous checkpoints intact and no partial file.
    Epochs whose loss is not finite, or for which `skip_epoch()` is true, are not saved.
    """

    def __init__(self, directory, keep=3, is_writer=True, skip_epoch=lambda: False):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.keep = keep
        self.is_writer = is_writer
        self.skip_epoch = skip_epoch

    def on_train_begin(self, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.is_writer:
            for stale in self.directory.glob(".tmp-epoch-*.keras"):  # left by a killed run
                stale.unlink()

    def _save(self, path):
        try:
            self.model.save(path)
        except OSError as error:
            path.unlink(missing_ok=True)
            raise OutputNotWritable(
                f"Could not write the checkpoint {path.name} in {self.directory}: {describe_os_error(error)}. "
                "The checkpoints of earlier epochs are intact; run the same command with --resume to continue."
            ) from None

    def on_epoch_begin(self, epoch, logs=None):
        self._saved_this_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if (loss is not None and not math.isfinite(float(np.mean(loss)))) or self.skip_epoch():
            return
        self._write(epoch + 1)
        self._saved_this_epoch = epoch + 1

    def on_train_end(self, logs=None):
        """With an optimizer that averages the weights, `fit` ends by putting the average in the model: the last
        epoch's checkpoint is written again to hold what the run evaluates and exports."""
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
        if getattr(self, "_saved_this_epoch", None) and optimizer.use_ema:
            self._write(self._saved_this_epoch)

    def _write(self, completed):
        """Saves the model as the checkpoint of `completed` epochs, atomically, and keeps the last `keep`."""
        name = f"epoch-{completed:04d}.keras"
        if not self.is_writer:
            # Other workers must take part in saving (variables may be distributed),
            # but write to a private scratch file that is thrown away.
            scratch = self.directory / f".tmp-worker-{os.getpid()}.keras"
            self._save(scratch)
            scratch.unlink()
            return
        tmp = self.directory / f".tmp-{name}"
        self._save(tmp)
        os.replace(tmp, self.directory / name)
        write_json_atomically(self.directory / LATEST, {"epoch": completed, "checkpoint": name})
        for old, _ in checkpoint_files(self.directory)[self.keep :]:
            old.unlink()
