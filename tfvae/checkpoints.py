"""Per-epoch checkpoints that are never half-written: write aside, then rename into place."""

import json
import math
import os
import pathlib

import keras

LATEST = "latest.json"


def write_json_atomically(path, data):
    """Writes `data` as JSON to `path` so readers see the old file or the new one, never a mix."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def latest_checkpoint(directory):
    """(path, completed epochs) of the newest complete checkpoint in `directory`, or None."""
    directory = pathlib.Path(directory)
    try:
        record = json.loads((directory / LATEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    path = directory / record["checkpoint"]
    return (path, int(record["epoch"])) if path.is_file() else None


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves model + optimizer as `epoch-NNNN.keras` after every epoch, keeping the last `keep`.

    The file is written under a temporary name and renamed when complete; only
    then does `latest.json` point at it. A run killed at any moment leaves the
    previous checkpoint intact. Epochs whose loss is not finite are not saved.
    """

    def __init__(self, directory, keep=3, is_writer=True):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.keep = keep
        self.is_writer = is_writer

    def on_train_begin(self, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.is_writer:
            for stale in self.directory.glob(".tmp-epoch-*.keras"):  # left by a killed run
                stale.unlink()

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        completed = epoch + 1
        name = f"epoch-{completed:04d}.keras"
        if not self.is_writer:
            # Other workers must take part in saving (variables may be distributed),
            # but write to a private scratch file that is thrown away.
            scratch = self.directory / f".tmp-worker-{os.getpid()}.keras"
            self.model.save(scratch)
            scratch.unlink()
            return
        tmp = self.directory / f".tmp-{name}"
        self.model.save(tmp)
        os.replace(tmp, self.directory / name)
        write_json_atomically(self.directory / LATEST, {"epoch": completed, "checkpoint": name})
        for old in sorted(self.directory.glob("epoch-*.keras"))[: -self.keep]:
            old.unlink()
