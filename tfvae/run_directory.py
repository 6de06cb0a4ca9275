"""Output locations: whether a directory holds a run, one writer at a time, writable before work starts, and
pictures that never replace a file the user did not ask to replace."""

import contextlib
import errno
import fcntl
import os
import pathlib
import sys
import tempfile

from tfvae.errors import OutputNotWritable, RunInUse

LOCK_FILE = ".lock"

# The PNG text entry that says which tfvae picture a file is (`check_picture_path` reads it back).
PICTURE_KEY = "tfvae-picture"

# Files whose presence means a directory holds a run (any one of them is enough).
RUN_MARKERS = ("run_config.json", "metrics.csv", "metrics.json", "checkpoints/latest.json")


def holds_run(directory):
    """True if `directory` holds a run's files: its settings, metrics or any checkpoint."""
    directory = pathlib.Path(directory)
    return any((directory / name).exists() for name in RUN_MARKERS) or any(
        (directory / "checkpoints").glob("epoch-*.keras")
    )


def describe_os_error(error):
    """A short cause for an OSError, with the fix for the common ones."""
    if error.errno == errno.ENOSPC:
        return "no space left on the device; free some space"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{error.strerror.lower()}; choose a location you can write to"
    return error.strerror or str(error)


def remove_if_empty(directories):
    """Removes each of `directories` that exists and is empty, deepest first: folders a refused call created."""
    for directory in sorted((pathlib.Path(d) for d in directories), key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty, already gone, or not ours to remove
            directory.rmdir()


def missing_folders(*paths):
    """The folders among `paths` and their parents that do not exist yet (None entries skipped)."""
    missing = set()
    for path in filter(None, paths):
        for folder in (pathlib.Path(path).absolute(), *pathlib.Path(path).absolute().parents):
            if folder.exists():
                break
            missing.add(folder)
    return missing


def check_writable(directory, option):
    """Creates `directory` if needed and proves it takes a file; raises `OutputNotWritable` naming `option`."""
    directory = pathlib.Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.write(b"0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise OutputNotWritable(
            f"The {option} {directory} is not writable ({describe_os_error(error)}). Choose another {option}."
        ) from None
    return directory


def _holder(lock_path):
    try:
        return lock_path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def locked(directory, option="--output-dir", wait=False, leave_no_trace=False):
    """Holds an exclusive lock on `directory` (an OS file lock, released when the process dies).

    Without `wait`, a directory locked by another process raises `RunInUse`
    naming that process; with it, waits for the lock (short critical sections, such as exports).
    With `leave_no_trace`, work that fails before writing anything beside the lock takes the lock file away
    (a run refused at the door leaves no folder behind that looks used); not for waiting locks, whose
    waiters would then hold a file nobody else can see.
    """
    lock_path = pathlib.Path(directory) / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RunInUse(
                f"{directory} is in use by another tfvae process ({_holder(lock_path)}). "
                f"Wait for it to finish, or choose another {option}."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)}".encode())
        try:
            yield
        except BaseException:
            if leave_no_trace and [entry.name for entry in lock_path.parent.iterdir()] == [LOCK_FILE]:
                lock_path.unlink()  # while still held: no other run can have taken it
            raise
    finally:
        os.close(fd)  # releases the lock


def process_alive(pid):
    """Whether process `pid` runs on this machine (one we may not signal counts): decides whether a run's lock is stale."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def writing(what, advice=""):
    """Turns an OSError raised while writing `what` into `OutputNotWritable` that names it and the cause."""
    try:
        yield
    except OutputNotWritable:
        raise
    except OSError as error:
        raise OutputNotWritable(f"Could not write {what}: {describe_os_error(error)}.{advice}") from None


def check_outside_checkpoints(path, option, run_dir=None):
    """Raises `OutputNotWritable` if `path` is a run's checkpoints folder or lies inside one (also `run_dir`'s, a
    run about to start): that folder holds only the run's own checkpoints, which resuming and loading read."""
    path = pathlib.Path(path)
    starting = None if run_dir is None else pathlib.Path(run_dir).resolve()
    for folder in (path.resolve(), *path.resolve().parents):
        if folder.name == "checkpoints" and (folder.parent == starting or holds_run(folder.parent)):
            raise OutputNotWritable(f"{option} {path} is inside a run's checkpoints folder; choose a path outside it.")


def check_run_location(directory, option="--output-dir"):
    """Raises `OutputNotWritable` if a run in `directory` would write inside another run's checkpoints or logs
    folder or inside an exported SavedModel, folders whose readers expect their own files only."""
    directory = pathlib.Path(directory)
    for folder in (directory.resolve(), *directory.resolve().parents):
        if (folder / "saved_model.pb").is_file():
            raise OutputNotWritable(f"{option} {directory} is inside the SavedModel {folder}; choose a folder outside it.")
        if folder.name == "checkpoints" and holds_run(folder.parent):
            raise OutputNotWritable(f"{option} {directory} is inside a run's checkpoints folder; choose a folder outside it.")
        if folder.name == "logs" and holds_run(folder.parent):
            raise OutputNotWritable(f"{option} {directory} is inside the logs of the run in {folder.parent}; choose a "
                                    "folder outside it.")


def check_picture_path(path, picture, option="--out", overwrite=False):
    """Returns `path` if a `picture` PNG may be written there, or raises `OutputNotWritable` saying why.

    It must name a .png file outside any run's checkpoints folder; an existing file is replaced only if it is
    an earlier `picture` written by tfvae (its PNG text says so), or with `overwrite`.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() != ".png":
        raise OutputNotWritable(f"Expected {option} to name a .png file. Received: {path}")
    check_outside_checkpoints(path, option)
    if path.is_dir():
        raise OutputNotWritable(f"{option} {path} is a folder. Name a .png file.")
    blocking = next((folder for folder in path.parents if folder.exists() and not folder.is_dir()), None)
    if blocking is not None:
        raise OutputNotWritable(f"{option} {path} cannot be written: {blocking} is a file, not a folder. Choose another {option}.")
    if not overwrite and is_foreign_file(path, picture):
        raise OutputNotWritable(
            f"{path} exists and is not a {picture} picture written by tfvae; it is left as it is. Choose another "
            f"{option}, or pass --overwrite to replace it."
        )
    return path


def is_foreign_file(path, picture):
    """Whether `path` holds a file that is not a `picture` tfvae wrote, which writing the picture would destroy."""
    return pathlib.Path(path).exists() and picture_of(path) != picture


def picture_of(path):
    """Which tfvae picture the PNG at `path` is (`PICTURE_KEY`), or None for any other file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.text.get(PICTURE_KEY) if image.format == "PNG" else None
    except (OSError, ValueError, SyntaxError):
        return None
