"""Errors about things a user can fix. Each message names the cause and the fix; the CLI prints
them as one line without a traceback."""


class TfvaeError(Exception):
    """Base class of tfvae's user-facing errors."""


class InvalidInput(TfvaeError, ValueError):
    """Data that a model cannot take: wrong shape, values outside the likelihood's support, labels out of range."""


class RunError(TfvaeError, ValueError):
    """A run or model file that cannot be used as asked."""


class RunInUse(RunError):
    """Another live tfvae process holds the lock on a run directory."""


class DamagedCheckpoint(RunError):
    """A checkpoint file that cannot be read back: truncated or corrupt."""


class UnloadableModel(RunError):
    """An intact model file that this tfvae cannot load: not a tfvae model, or saved by a newer tfvae."""


class OutputNotWritable(TfvaeError, OSError):
    """An output location that cannot be written: missing permission, read-only, or a full disk."""


class TrainingDiverged(TfvaeError, RuntimeError):
    """Training stopped because the loss became non-finite or exploded."""


class TrainingInterrupted(TfvaeError, RuntimeError):
    """Training stopped by Ctrl-C; the last complete checkpoint is kept for `--resume`."""
