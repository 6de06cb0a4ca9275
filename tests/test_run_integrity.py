"""A user's run is never lost or mixed: damaged files, a second process, full or read-only disks, limits."""

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
from conftest import MNIST_CLI, MNIST_DIR, invoke_cli

import tfvae
from tfvae.checkpoints import load_model
from tfvae.config import read_run_config
from tfvae.errors import DamagedCheckpoint, RunError
from tfvae.run_directory import locked

SMALL = [*MNIST_CLI, "--train-split", "test[:1000]", "--eval-split", "test[9000:9200]", "--latent-dim", "4",
         "--log-likelihood-samples", "10", "--quiet"]



def assert_clean_failure(result, message, code=1):
    assert result.exit_code == code, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output and "Aborted!" not in result.output


def digests(directory):
    """{relative path: sha256} of every file below `directory` except the lock file."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 3-epoch run on MNIST test[:1000] (3 checkpoints kept), copied afresh by `run_copy`."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = invoke_cli("train", *SMALL, "--epochs", "3", "--output-dir", run, "--no-export")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def corrupt(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # flip bytes in the middle, inside the weights
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
        path.write_bytes(bytes(data))


# 1. The run directory's contents decide whether it holds a run -------------------------------


@pytest.mark.slow
def test_resume_without_latest_json_continues_from_the_newest_checkpoint(run_copy):
    before = digests(run_copy)
    (run_copy / "checkpoints" / "latest.json").unlink()
    result = invoke_cli("train", *SMALL, "--epochs", "4", "--output-dir", run_copy, "--no-export", "--resume")
    assert result.exit_code == 0, result.output
    assert "Epoch 4/4" in result.output and "Epoch 1/4" not in result.output
    assert result.output.count("XLA on: ") == 1, result.output  # said once, not again when the checkpoint loads
    after = digests(run_copy)
    # Earlier epochs' checkpoints untouched; metrics.csv continued, its first rows unchanged.
    for name in ("checkpoints/epoch-0002.keras", "checkpoints/epoch-0003.keras"):
        assert after[name] == before[name]
    rows = (run_copy / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 1, 2, 3]
    assert json.loads((run_copy / "checkpoints" / "latest.json").read_text())["epoch"] == 4


@pytest.mark.slow
def test_resume_of_a_finished_run_says_nothing_is_left_to_train(run_copy):
    before = digests(run_copy)
    result = invoke_cli("train", *SMALL, "--epochs", "3", "--output-dir", run_copy, "--no-export", "--resume")
    assert result.exit_code == 0, result.output
    assert "All 3 epochs of the run" in result.output and "nothing left to train" in result.output, result.output
    assert "Epoch " not in result.output
    after = digests(run_copy)
    assert {name: after[name] for name in before if name.startswith("checkpoints/")} == {
        name: digest for name, digest in before.items() if name.startswith("checkpoints/")}


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["invalid json", "missing"])
def test_a_new_run_refuses_a_directory_whose_latest_json_is_damaged(run_copy, damage):
    latest = run_copy / "checkpoints" / "latest.json"
    if damage == "missing":
        latest.unlink()
    else:
        latest.write_text("{not json")
    before = digests(run_copy)
    result = invoke_cli("train", *SMALL, "--epochs", "1", "--output-dir", run_copy, "--no-export")
    assert_clean_failure(result, "already holds a run")
    assert digests(run_copy) == before


# 2. One writer per run directory; exports take turns -------------------------------------------


@pytest.mark.slow
def test_a_second_run_into_the_same_directory_refuses_at_once(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "tfvae.cli", "train", *SMALL, "--train-split", "test[:8000]", "--epochs", "3",
         "--output-dir", str(run), "--export-dir", str(tmp_path / "sm")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )
    deadline = time.time() + 120
    while not (run / "run_config.json").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.1)
    assert (run / "run_config.json").exists()
    started = time.time()
    second = invoke_cli("train", *SMALL, "--epochs", "1", "--latent-dim", "6", "--output-dir", run, "--export-dir", tmp_path / "sm")
    assert time.time() - started < 30
    assert_clean_failure(second, f"is in use by another tfvae process (pid {first.pid}")
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]
    config = read_run_config(run / "run_config.json").flat()
    assert config["latent_dim"] == 4 and config["epochs"] == 3  # the first run's own settings
    assert len((run / "metrics.csv").read_text().splitlines()) == 4
    assert sorted(p.name for p in (tmp_path / "sm").iterdir() if not p.name.startswith(".")) == ["1"]


@pytest.mark.slow
def test_concurrent_exports_take_turns_and_distinct_versions(tmp_path, run_copy):
    from tfvae.export import export_saved_model

    vae = load_model(run_copy)
    export_dir = tmp_path / "sm"
    export_dir.mkdir()
    hold = threading.Event()

    def hold_the_lock():
        with locked(export_dir, wait=True):
            hold.set()
            time.sleep(2.0)
            (export_dir / "1").mkdir()  # another exporter's version appears while we wait

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    hold.wait()
    started = time.time()
    path = export_saved_model(vae, export_dir)
    holder.join()
    assert time.time() - started >= 1.5
    assert path.name == "2" and (path / "saved_model.pb").is_file()


# 3. Damaged checkpoints: fall back to the newest that loads, say which was skipped -----------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["corrupt bytes", "truncated"])
def test_resume_skips_a_damaged_latest_checkpoint(run_copy, how):
    before = digests(run_copy)
    corrupt(run_copy / "checkpoints" / "epoch-0003.keras", how)
    result = invoke_cli("train", *SMALL, "--epochs", "4", "--output-dir", run_copy, "--no-export", "--resume")
    assert result.exit_code == 0, result.output
    assert "Skipped the checkpoint" in result.output and "epoch-0003.keras" in result.output
    assert "Epoch 3/4" in result.output and "Epoch 2/4" not in result.output
    after = digests(run_copy)
    assert after["checkpoints/epoch-0002.keras"] == before["checkpoints/epoch-0002.keras"]
    rows = (run_copy / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 1, 2, 3]  # epoch 3's old row replaced, not duplicated
    for name in ("epoch-0003.keras", "epoch-0004.keras"):  # rewritten whole
        load_model(run_copy / "checkpoints" / name)


@pytest.mark.slow
def test_every_reader_falls_back_past_a_damaged_checkpoint(run_copy, tmp_path, caplog):
    corrupt(run_copy / "checkpoints" / "epoch-0003.keras", "corrupt bytes")
    expected = keras.models.load_model(run_copy / "checkpoints" / "epoch-0002.keras")
    model = tfvae.load_model(run_copy)
    assert "epoch-0003.keras" in caplog.text
    for mine, theirs in zip(model.get_weights(), expected.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert invoke_cli("sample", run_copy, "-n", 4, "--out", tmp_path / "s.png").exit_code == 0
    assert invoke_cli("export", run_copy, "--export-dir", tmp_path / "sm").exit_code == 0
    evaluated = invoke_cli("evaluate", run_copy, *MNIST_CLI, "--split", "test[9000:9100]", "--log-likelihood-samples", 0)
    assert evaluated.exit_code == 0, evaluated.output
    explicit = invoke_cli("sample", run_copy / "checkpoints" / "epoch-0003.keras", "--out", tmp_path / "t.png")
    assert_clean_failure(explicit, "is damaged: corrupt bytes")
    for name in ("epoch-0001.keras", "epoch-0002.keras"):
        corrupt(run_copy / "checkpoints" / name, "truncated")
    none_loads = invoke_cli("sample", run_copy, "--out", tmp_path / "u.png")
    assert_clean_failure(none_loads, "None of the 3 checkpoints")
    assert "Skipped the checkpoint" not in none_loads.output  # each reason said once, in the error
    assert none_loads.output.count("epoch-0001.keras is damaged") == 1, none_loads.output


# 4-5. Damaged and inconsistent data files -----------------------------------------------------------


def _idx_folder(tmp_path, labels_kept=None, truncate_images=False):
    folder = tmp_path / "idx"
    folder.mkdir()
    images = (MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()
    if truncate_images:
        images = images[: len(images) // 2]
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(images)
    with gzip.open(MNIST_DIR / "t10k-labels-idx1-ubyte.gz") as f:
        labels = f.read()
    if labels_kept is not None:  # a valid IDX file with fewer labels
        labels = labels[:4] + labels_kept.to_bytes(4, "big") + labels[8 : 8 + labels_kept]
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(labels)
    return folder


def test_a_truncated_gz_file_gets_a_message(tmp_path):
    folder = _idx_folder(tmp_path, truncate_images=True)
    result = invoke_cli("train", "--dataset", "mnist", "--data-dir", folder, "--train-split", "test", "--output-dir", tmp_path / "r")
    assert_clean_failure(result, "is truncated or corrupt: it cannot be decompressed")


def test_image_and_label_counts_are_compared_at_load_time(tmp_path):
    folder = _idx_folder(tmp_path, labels_kept=5000)
    result = invoke_cli("train", "--dataset", "mnist", "--data-dir", folder, "--train-split", "test", "--output-dir", tmp_path / "r")
    assert_clean_failure(result, "holds 10000 images but 5000 labels")
    npz = tmp_path / "short.npz"
    np.savez(npz, x_train=np.zeros((10, 28, 28), np.uint8), y_train=np.zeros(7, np.int64))
    result = invoke_cli("train", "--dataset", "mine", "--data-dir", npz, "--output-dir", tmp_path / "r2")
    assert_clean_failure(result, "holds 10 images but 7 labels")


def test_data_dir_mistakes_get_messages(tmp_path):
    fake = tmp_path / "data.npz"
    fake.write_text("not a zip")
    assert_clean_failure(invoke_cli("train", "--dataset", "x", "--data-dir", fake, "--output-dir", tmp_path / "r"),
                         "is not an .npz file")
    gz = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    assert_clean_failure(invoke_cli("train", "--dataset", "mnist", "--data-dir", gz, "--output-dir", tmp_path / "r"),
                         f"is a file. Point it at the folder that holds the IDX files (here {MNIST_DIR})")


# 6. Write failures: checked up front, partial files cleaned, disk-full as a message ----------------


@contextlib.contextmanager
def small_filesystem(path, size, read_only=False):
    """A tmpfs of `size` mounted at `path` (needs root: skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    path.mkdir(parents=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_with_a_message_and_earlier_checkpoints_intact(tmp_path):
    # One checkpoint of this model (weights + Adam moments) is ~7.8 MB: the second one does not fit.
    with small_filesystem(tmp_path / "disk", "12m") as disk:
        run = disk / "run"
        result = invoke_cli("train", *SMALL, "--epochs", "3", "--output-dir", run, "--no-export")
        assert_clean_failure(result, "no space left on the device")
        assert "--resume" in result.output
        checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert checkpoints == ["epoch-0001.keras", "latest.json"], checkpoints  # no partial .tmp file
        load_model(run)


@pytest.mark.slow
def test_a_read_only_export_dir_is_found_before_training(tmp_path):
    with small_filesystem(tmp_path / "ro", "1m", read_only=True) as read_only:
        started = time.time()
        result = invoke_cli("train", *SMALL, "--epochs", "3", "--output-dir", tmp_path / "run", "--export-dir", read_only / "sm")
        assert_clean_failure(result, "--export-dir")
        assert "read-only file system" in result.output.lower()
        assert not (tmp_path / "run" / "checkpoints").exists() and time.time() - started < 30


def test_an_unwritable_output_location_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_clean_failure(invoke_cli("train", *SMALL, "--output-dir", blocker / "run"), "The --output-dir")
    assert_clean_failure(invoke_cli("train", *SMALL, "--output-dir", tmp_path / "run", "--export-dir", blocker / "sm"),
                         "The --export-dir")


# 7. Only tfvae models load -------------------------------------------------------------------------


def test_a_plain_keras_model_is_refused(tmp_path):
    path = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(path)
    with pytest.raises(RunError, match="class Sequential, not a tfvae model"):
        load_model(path)
    assert_clean_failure(invoke_cli("sample", path, "--out", tmp_path / "s.png"), "not a tfvae model")
    not_keras = tmp_path / "junk.keras"
    not_keras.write_bytes(b"\x00" * 100)
    with pytest.raises(DamagedCheckpoint, match="is damaged: not a readable .keras archive"):
        load_model(not_keras)


# 8. Divergence that stays finite --------------------------------------------------------------------


@pytest.mark.slow
def test_an_exploding_loss_stops_training_without_an_export(tmp_path):
    result = invoke_cli("train", *SMALL, "--epochs", "3", "--learning-rate", "1e3", "--output-dir", tmp_path / "run",
                        "--export-dir", tmp_path / "sm")
    assert_clean_failure(result, "The loss exploded")
    assert "Lower the learning rate" in result.output and "fixed Gaussian scale" not in result.output
    assert "Nothing was exported" in result.output
    assert not (tmp_path / "sm").exists()  # the export folder the run made for its SavedModel is gone again, empty
    assert (tmp_path / "run" / "metrics.csv").exists()  # while the run's own records stay


def test_divergence_advice_matches_the_likelihood_scale():
    from tfvae.callbacks import DivergenceGuard

    class Stub:
        stop_training = False

    for learned, mentions_scale in ((True, True), (False, False)):
        guard = DivergenceGuard(learned_scale=learned)
        guard.set_model(Stub())
        guard.on_train_batch_end(0, {"loss": 500.0})
        guard.on_train_batch_end(1, {"loss": 400.0})
        assert guard.message is None
        guard.on_train_batch_end(2, {"loss": 6e4})
        assert guard.model.stop_training and "exploded to 6e+04" in guard.message
        assert ("fixed Gaussian scale" in guard.message) == mentions_scale


# 9. Unbounded sizes ---------------------------------------------------------------------------------


def test_sizes_are_bounded(tmp_path):
    assert_clean_failure(invoke_cli("sample", tmp_path, "-n", 1000000000), "1000000000 is not in the range 1<=x<=10000", code=2)
    vae = tfvae.VAE.for_images((4, 5, 1), latent_dim=3)
    with pytest.raises(ValueError, match=r"Expected n <= \d+"):
        vae.sample(10**9)


@pytest.mark.slow
def test_steps_per_execution_is_clamped_to_an_epoch(tmp_path):
    result = invoke_cli("train", *SMALL, "--train-split", "test[:2000]", "--epochs", "1", "--steps-per-execution", "1000",
                        "--output-dir", tmp_path / "run", "--no-export")
    assert result.exit_code == 0, result.output
    assert "steps_per_execution is 15, not 1000" in result.output
    assert read_run_config(tmp_path / "run" / "run_config.json").flat()["steps_per_execution"] == 15


# 10. The Python API checks its arguments -----------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda vae, x: vae.elbo(x, num_samples=0), "Expected num_samples to be an integer >= 1. Received: num_samples=0"),
        (lambda vae, x: vae.elbo(x, num_samples=-2), "Received: num_samples=-2"),
        (lambda vae, x: vae.elbo(x, batch_size=0), "Expected batch_size to be an integer >= 1. Received: batch_size=0"),
        (lambda vae, x: vae.log_likelihood(x, batch_size=0), "Received: batch_size=0"),
        (lambda vae, x: vae.log_likelihood(x, num_samples=2.5), "Received: num_samples=2.5"),
    ],
)
def test_api_arguments_are_checked(call, message):
    vae = tfvae.VAE.for_images((4, 5, 1), latent_dim=3)
    with pytest.raises(ValueError, match=message):
        call(vae, np.zeros((2, 4, 5, 1), np.float32))


# 11. Leftovers and small mistakes -------------------------------------------------------------------


def test_a_killed_exports_temporary_folder_is_removed_by_the_next_export(tmp_path):
    from tfvae.export import export_saved_model

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "sm" / f".tmp-1-{dead.pid}"
    (stale / "variables").mkdir(parents=True)
    live = tmp_path / "sm" / f".tmp-9-{os.getpid()}"  # a live writer's folder is left alone
    live.mkdir()
    path = export_saved_model(tfvae.VAE.for_images((4, 5, 1), latent_dim=3), tmp_path / "sm")
    assert path.name == "1" and not stale.exists() and live.exists()


def test_resume_of_a_missing_directory_creates_nothing(tmp_path):
    result = invoke_cli("train", *SMALL, "--output-dir", tmp_path / "nope", "--resume")
    assert_clean_failure(result, "does not exist. Start the run without --resume")
    assert not (tmp_path / "nope").exists()
