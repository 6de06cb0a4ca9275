"""Every way data enters is checked, with a message that names the input and the fix; outputs never replace a
file the user did not ask to replace; interrupts and odd requests end cleanly."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import MNIST_CLI, invoke_cli, train_mnist_run

import tfvae
from tfvae.data import load_dataset
from tfvae.errors import InvalidInput, OutputNotWritable

SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def digits(binarized_mnist, mnist_test_labels):
    return binarized_mnist[0][:256], mnist_test_labels[:256].copy()


# tf.data batches, checked as they flow -------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: tfvae.ConditionalVAE.for_images(SHAPE, num_classes=10, latent_dim=2),
    lambda: tfvae.StackedSemiSupervisedVAE.on_codes_of(tfvae.VAE.for_images(SHAPE, latent_dim=3), 10, latent_dim=2,
                                                       hidden_units=(8,)),
], ids=["conditional", "m1+m2"])
def test_a_dataset_label_out_of_range_stops_fit_naming_the_batch(make, digits):
    images, labels = digits
    labels[200] = 12  # in the fourth batch of 64
    model = make()
    model.labeled_fraction = 1.0
    model.compile()
    with pytest.raises(InvalidInput, match=r"the dataset x, batch 3 of an epoch .*expected labels in \[0, 10\).*\[0, 12\]"):
        model.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(64), epochs=1, verbose=0)


def test_dataset_pixels_outside_the_support_stop_fit_and_evaluate(digits):
    images, _ = digits
    vae = tfvae.VAE.for_images(SHAPE, latent_dim=2)
    vae.compile()
    bad = tf.data.Dataset.from_tensor_slices(images * 255).batch(64)
    with pytest.raises(InvalidInput, match=r"batch 0 .*expected images in \[0.0, 1.0\]. Received: values in \[0, 255\]"):
        vae.fit(bad, epochs=1, verbose=0)
    with pytest.raises(InvalidInput, match="Scale 8-bit images with x / 255"):
        vae.evaluate(bad, verbose=0)
    with pytest.raises(ValueError, match="integer labels. Received: dtype=float32"):
        tfvae.ConditionalVAE.for_images(SHAPE, num_classes=10, latent_dim=2).fit(
            tf.data.Dataset.from_tensor_slices((images, np.ones(len(images), np.float32))).batch(64))


# Files, at load time, before any training -----------------------------------------------------


def test_npz_labels_are_checked_when_loaded(tmp_path, mnist_test_images):
    x = (mnist_test_images[:100, ..., 0] * 255).astype(np.uint8)
    for name, labels, message in (
        ("negative", np.full(100, -3), "holds the label -3; expected classes 0, 1, ... and -1"),
        ("fractional", np.linspace(0, 9, 100), "labels that are not whole numbers"),
    ):
        np.savez(tmp_path / f"{name}.npz", x_train=x, y_train=labels)
        with pytest.raises(tfvae.data.DataUnavailable, match=message):
            load_dataset("mine", data_dir=tmp_path / f"{name}.npz", with_labels=True)
    np.savez(tmp_path / "whole.npz", x_train=x, y_train=np.arange(100.0) % 10)  # whole numbers stored as floats: fine
    assert load_dataset("mine", data_dir=tmp_path / "whole.npz", with_labels=True, return_info=True)[1].num_classes == 10


def test_a_held_out_split_with_classes_training_never_shows_is_refused_before_training(tmp_path, mnist_test_images,
                                                                                        mnist_test_labels):
    few = np.isin(mnist_test_labels, (0, 1, 2))
    np.savez(tmp_path / "digits.npz", x_train=(mnist_test_images[few][:600, ..., 0] * 255).astype(np.uint8),
             y_train=mnist_test_labels[few][:600], x_test=(mnist_test_images[:200, ..., 0] * 255).astype(np.uint8),
             y_test=mnist_test_labels[:200])
    result = invoke_cli("train", "--dataset", "digits", "--data-dir", tmp_path / "digits.npz", "--model", "conditional",
                        "--output-dir", tmp_path / "run")
    assert result.exit_code == 1 and "has classes the training split 'train' never shows (3, 4, 5" in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unlabeled_examples_are_refused_before_training_a_model_that_needs_every_label(tmp_path, mnist_test_images,
                                                                                       mnist_test_labels):
    labels = mnist_test_labels[:600].copy()
    labels[::20] = -1  # 30 unknown labels: fine for M2, not for a conditional model
    np.savez(tmp_path / "digits.npz", x_train=(mnist_test_images[:600, ..., 0] * 255).astype(np.uint8), y_train=labels,
             x_test=(mnist_test_images[600:800, ..., 0] * 255).astype(np.uint8), y_test=mnist_test_labels[600:800])
    result = invoke_cli("train", "--dataset", "digits", "--data-dir", tmp_path / "digits.npz", "--model", "conditional",
                        "--output-dir", tmp_path / "runs" / "run", "--export-dir", tmp_path / "served")
    assert result.exit_code == 1, result.output
    assert ("The split 'train' of digits has 30 of its 600 examples unlabeled (label -1), but --model conditional needs "
            "a label for every image. Train --model semi-supervised (or m2)") in " ".join(result.output.split())
    # Refused at the door: no folder it created is left behind, so the same command runs once the data is fixed.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["digits.npz"]
    (tmp_path / "mine").mkdir()  # a folder the user made stays, without a lock file in it
    result = invoke_cli("train", "--dataset", "digits", "--data-dir", tmp_path / "digits.npz", "--model", "conditional",
                        "--output-dir", tmp_path / "mine")
    assert result.exit_code == 1 and "unlabeled (label -1)" in result.output, result.output
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


@pytest.mark.parametrize("where", ["run/checkpoints", "run/checkpoints/new", "run/logs/new", "served/1", "served/1/new"])
def test_a_run_never_writes_inside_another_runs_checkpoints_or_logs_or_a_saved_model(where, tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "logs").mkdir()
    (tmp_path / "run" / "run_config.json").write_text("{}")
    (tmp_path / "served" / "1").mkdir(parents=True)
    (tmp_path / "served" / "1" / "saved_model.pb").write_bytes(b"")
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    result = invoke_cli("train", *MNIST_CLI, "--output-dir", tmp_path / where, "--no-export")
    assert result.exit_code == 1 and "outside it" in result.output, result.output
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before


def test_a_run_refuses_a_folder_holding_a_picture_of_the_users(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "samples.png").write_text("my own picture")
    result = invoke_cli("train", *MNIST_CLI, "--output-dir", tmp_path / "mine", "--no-export")
    assert result.exit_code == 1, result.output
    assert "holds samples.png, which is not a samples picture written by tfvae" in " ".join(result.output.split())
    assert (tmp_path / "mine" / "samples.png").read_text() == "my own picture"
    assert sorted(path.name for path in (tmp_path / "mine").iterdir()) == ["samples.png"]


@pytest.mark.parametrize("arrays, message", [
    ({"x_test": np.zeros((50, 32, 32), np.uint8)},
     "holds images of shape (32, 32, 1), the training split 'train' images of shape (28, 28, 1): a model takes one shape"),
    ({"x_train": np.full((300, 28, 28), np.nan, np.float32)}, "Every pixel of the split 'train' of mine is missing (NaN)"),
    ({"x_train": np.array([object()] * 300, dtype=object)}, "The array x_train in"),
], ids=["split shapes", "all missing", "objects"])
def test_npz_files_whose_splits_cannot_train_are_refused_before_anything_is_written(arrays, message, tmp_path,
                                                                                     mnist_test_images):
    digits = (mnist_test_images[:300, ..., 0] * 255).astype(np.uint8)
    np.savez(tmp_path / "mine.npz", **{"x_train": digits, "x_test": digits[:50], **arrays}, allow_pickle=True)
    result = invoke_cli("train", "--dataset", "mine", "--data-dir", tmp_path / "mine.npz", "--output-dir", tmp_path / "run",
                        "--no-export", "--epochs", "1")
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sample_names_its_label_option_and_the_models_classes(run, tmp_path):
    result = invoke_cli("sample", run, "--label", "3", "--out", tmp_path / "s.png")
    assert result.exit_code == 2 and "--label applies to models of labels" in result.output, result.output
    (tmp_path / "a_file").write_text("")
    result = invoke_cli("sample", run, "--out", tmp_path / "a_file" / "s.png")
    assert result.exit_code != 0 and "a_file is a file, not a folder" in " ".join(result.output.split()), result.output


def test_stacked_model_answers_image_questions_with_m1(digits):
    m1 = tfvae.VAE.for_images(SHAPE, latent_dim=3, seed=0)
    stacked = tfvae.StackedSemiSupervisedVAE.on_codes_of(m1, 10, latent_dim=2, hidden_units=(8,))
    images, observed = digits[0][:4], tfvae.masks.make("top_half", SHAPE)
    np.testing.assert_array_equal(stacked.reconstruct(images), m1.reconstruct(images))
    np.testing.assert_array_equal(stacked.encode(images).mean(), m1.encode(images).mean())
    np.testing.assert_array_equal(stacked.completion_log_likelihood(images, observed, num_samples=5, seed=0),
                                  m1.completion_log_likelihood(images, observed, num_samples=5, seed=0))
    with pytest.raises(ValueError, match="answers complete with M1, its VAE of images, which takes no labels"):
        stacked.complete(images, observed, labels=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="Measure M1 instead"):
        tfvae.diagnostics.gradient_variance(stacked, images, num_draws=2)
    with pytest.raises(ValueError, match=r"Expected latent codes of shape \(..., 3\). Received: shape=\(2, 7\)"):
        m1.sample_from(np.zeros((2, 7)))
    with pytest.raises(ValueError, match=r"Expected the shape of one image, \(height, width, channels\)"):
        tfvae.masks.make("top_half", (28, 28))


# The SavedModel's signatures ------------------------------------------------------------------


@pytest.mark.slow
def test_signatures_refuse_bad_inputs_with_a_message_naming_them(tmp_path):
    vae = tfvae.ConditionalVAE.for_images(SHAPE, num_classes=10, latent_dim=2, seed=0)
    path = tfvae.export.export_saved_model(vae, tmp_path / "saved")
    served = tf.saved_model.load(str(path))
    images = tf.zeros((2, *SHAPE))
    observed = tf.constant(np.arange(784).reshape(1, *SHAPE).repeat(2, 0) < 392, tf.float32)
    holes = np.zeros((2, *SHAPE), np.float32)
    holes[:, 20:] = np.nan  # missing pixels may hold NaN
    assert served.signatures["complete"](images=holes, observed=observed, seed=tf.constant(0),
                                         labels=tf.constant([1, 2]))["completion"].shape == (2, *SHAPE)
    holes[:, :2] = np.nan  # but not the observed ones
    calls = {
        r"expected labels in \[0, 10\). Received: labels in \[1, 10\]": ("encode", {"images": images, "labels": [1, 10]}),
        r"labels in \[-1, 2\]": ("sample", {"labels": [2, -1], "seed": 0}),
        r"expected images in \[0.0, 1.0\]. Received: values in \[3, 3\]": ("elbo", {"images": images + 3, "labels": [1, 2]}),
        "expected finite images in their observed pixels": ("complete", {"images": holes, "observed": observed,
                                                                         "seed": 0, "labels": [1, 2]}),
        "expected observed to hold 1 where a pixel is known": ("complete", {"images": images, "observed": observed * 0.5,
                                                                            "seed": 0, "labels": [1, 2]}),
    }
    for message, (signature, inputs) in calls.items():
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            served.signatures[signature](**{key: tf.constant(value) for key, value in inputs.items()})


# Outputs never replace a file the user did not ask to replace ------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_mnist_run(tmp_path_factory.mktemp("doors") / "run", "test[:512]", "test[9000:9100]", epochs=2, latent_dim=2)


@pytest.mark.slow
def test_pictures_never_replace_a_checkpoint_a_run_file_or_another_picture(run, tmp_path):
    newest = run / "checkpoints" / "epoch-0002.keras"
    before = newest.read_bytes()
    for args, message in (
        (["sample", run, "--out", newest], "Expected --out to name a .png file"),
        (["sample", run, "--out", run / "checkpoints" / "grid.png"], "inside a run's checkpoints folder"),
        (["complete", run, *MNIST_CLI, "--split", "test[9000:9010]", "--out", run / "metrics.json"],
         "Expected --out to name a .png file"),
        (["sample", run, "--out", run / "reconstructions.png"], "is not a samples picture written by tfvae"),
    ):
        result = invoke_cli(*args)
        assert result.exit_code == 1 and message in result.output, result.output
    assert newest.read_bytes() == before and tfvae.load_model(run).built
    mine = tmp_path / "mine.png"
    keras.utils.save_img(mine, np.zeros((8, 8, 1)))
    assert "pass --overwrite to replace it" in invoke_cli("sample", run, "--out", mine).output
    assert invoke_cli("sample", run, "--out", mine, "--overwrite").exit_code == 0
    assert invoke_cli("sample", run, "--out", mine, "-n", "4").exit_code == 0  # an earlier samples picture: replaced
    (tmp_path / "pictures").mkdir()
    shutil.copy(run / "samples.png", tmp_path / "pictures" / "manifold.png")
    result = invoke_cli("explore", run, *MNIST_CLI, "--split", "test[9000:9100]", "--out-dir", tmp_path / "pictures")
    assert result.exit_code == 1 and "is not a manifold picture written by tfvae" in result.output


@pytest.mark.slow
def test_commands_reading_a_run_read_its_data_and_never_export_into_its_checkpoints(run, tmp_path):
    from tfvae.config import data_source_for

    result = invoke_cli("evaluate", run, "--split", "test[9000:9100]", "--log-likelihood-samples", 0, "--json")
    assert result.exit_code == 0, result.output  # the run's MNIST folder, not a download
    assert json.loads(result.stdout)["num_examples"] == 100
    other = invoke_cli("evaluate", run, "--dataset", "fashion_mnist", "--no-download", "--split", "test[:50]",
                       "--log-likelihood-samples", 0)
    assert other.exit_code == 0 and f"Reading fashion_mnist; the run in {run} trained on mnist" in other.output
    assert data_source_for(run, "mnist") == data_source_for(run) == ("mnist", MNIST_CLI[3])
    assert data_source_for(run / "checkpoints" / "epoch-0002.keras") == ("mnist", None)  # a file carries no settings
    for export_dir in (run / "checkpoints", run / "checkpoints" / "served"):
        result = invoke_cli("export", run, "--export-dir", export_dir)
        assert result.exit_code == 1 and "inside a run's checkpoints folder" in result.output, result.output
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001.keras", "epoch-0002.keras",
                                                                        "latest.json"]
    fresh = invoke_cli("train", *MNIST_CLI, "--output-dir", tmp_path / "new", "--export-dir", tmp_path / "new" / "checkpoints")
    assert fresh.exit_code == 1 and "inside a run's checkpoints folder" in fresh.output, fresh.output


# Interrupts, odd requests and the messages they get -------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_after_training_exits_130_and_says_what_is_left(tmp_path, monkeypatch):
    from tfvae import training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.evaluation, "evaluate", interrupted)
    result = invoke_cli("train", *MNIST_CLI, "--train-split", "test[:256]", "--eval-split", "test[9000:9100]", "--epochs", "1",
                        "--latent-dim", "2", "--no-export", "--output-dir", tmp_path / "run")
    assert result.exit_code == 130 and "Training is complete" in result.output and "tfvae evaluate" in result.output
    assert "Aborted" not in result.output
    monkeypatch.setattr("tfvae.checkpoints.load_model", interrupted)
    result = invoke_cli("sample", tmp_path / "run", "--out", tmp_path / "s.png")
    assert result.exit_code == 130 and "Interrupted" in result.output


def test_the_snr_leaves_out_gradients_equal_in_every_draw(digits):
    from tfvae.diagnostics import gradient_variance

    with tfvae.precision.precision("mixed_bfloat16"):
        vae = tfvae.VAE.for_images(SHAPE, latent_dim=4, seed=0)
    results = gradient_variance(vae, digits[0][:16], ("reparameterization",), num_draws=5, seed=0)
    assert 0 < results["reparameterization"]["decoder_snr"] < 1e4, results


def test_kl_warmup_is_refused_where_the_objective_has_no_kl_weight(digits, tmp_path):
    vae = tfvae.VAE.for_images(SHAPE, latent_dim=2, objective="wake_sleep")
    vae.compile()
    with pytest.raises(ValueError, match="objective='wake_sleep' has none. Drop the KLWarmup callback"):
        vae.fit(digits[0][:32], batch_size=16, epochs=1, callbacks=[tfvae.KLWarmup(2)], verbose=0)
    result = invoke_cli("train", *MNIST_CLI, "--objective", "reweighted_wake_sleep", "--warmup-epochs", "2",
                        "--output-dir", tmp_path / "run")
    assert result.exit_code != 0 and "objective='reweighted_wake_sleep' has none" in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mask, message", [
    ("quadrants:0", "needs a whole number from 1 to 3 after the colon, e.g. 'quadrants:2'"),
    ("random:2", "strictly between 0 and 1 after the colon, e.g. 'random:0.5'"),
    ("middle", "Unknown mask 'middle'. Expected one of top_half"),
])
def test_a_wrong_mask_is_refused_before_the_model_loads(mask, message, tmp_path):
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_bytes(b"not a zip")  # loading it would fail with another message
    result = invoke_cli("complete", not_a_model, *MNIST_CLI, "--mask", mask)
    assert result.exit_code == 2 and message in result.output and "--mask" in result.output, result.output


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["explore", "RUN", *MNIST_CLI, "--split", "test[0:1]"], "Expected at least 2 images to picture"),
    (["train", *MNIST_CLI, "--train-split", "test[:505]", "--model", "m2", "--labeled-examples", "501"],
     "does not divide into the 10 classes. Use a multiple of 10, e.g. 400"),  # 40 of the scarcest class
    (["train", *MNIST_CLI, "--strategy", "tpu"], "No TPU found"),
    (["train", *MNIST_CLI, "--model", "conditional", "--alpha", "10"], "--alpha applies to --model semi-supervised or m2"),
    (["train", *MNIST_CLI, "--class-consistency-weight", "5"], "--class-consistency-weight applies to --model conditional"),
])
def test_messages_name_the_problem_and_the_fix(args, message, run):
    result = invoke_cli(*[run if arg == "RUN" else arg for arg in args])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output, result.output


@pytest.mark.slow
def test_library_calls_with_odd_arguments_get_messages(run, digits, tmp_path):
    vae = tfvae.VAE.for_images(SHAPE, latent_dim=2)
    with pytest.raises(ValueError, match="Expected a batch of at least one image"):
        vae.complete(digits[0][:0], tfvae.masks.make("top_half", SHAPE))
    with pytest.raises(ValueError, match="a pixel without a value is missing"):
        vae.complete(np.where(np.arange(784).reshape(SHAPE) < 10, np.nan, digits[0][:2]), tfvae.masks.make("top_half", SHAPE))
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(OutputNotWritable, match="The export_dir .*a_file is not writable") as refused:
        tfvae.export.export_saved_model(vae, tmp_path / "a_file")  # a Python call's message names its argument
    assert "--export-dir" not in str(refused.value) and (tmp_path / "a_file").read_text() == "mine"
    with pytest.raises(TypeError, match="Expected m1 to be a trained tfvae.VAE, or a path to one. Received: dict"):
        tfvae.StackedSemiSupervisedVAE.on_codes_of({"latent_dim": 2}, 10)
    assert isinstance(tfvae.StackedSemiSupervisedVAE.on_codes_of(str(run), 10, latent_dim=2).m1, tfvae.VAE)
    copy = tmp_path / "model.keras"
    shutil.copy(run / "checkpoints" / "epoch-0002.keras", copy)
    result = invoke_cli("complete", copy, *MNIST_CLI, "--split", "test[9000:9010]", "--draws", "0",
                        "--num-samples", "10", "--out", tmp_path / "c.png", "--json")
    assert "comes from --train-split 'train' (a model file carries no run settings" in result.output
    assert result.exit_code == 1 and "The baseline's --train-split cannot be read" in result.output
    result = invoke_cli("complete", copy, *MNIST_CLI, "--split", "test[9000:9010]", "--train-split", "test[:100]",
                        "--draws", "0", "--num-samples", "10", "--out", tmp_path / "c.png", "--json")
    assert result.exit_code == 0, result.output


def test_fashion_mnist_loads_without_a_line_about_a_missing_tfds_folder(caplog, capfd):
    data = load_dataset("fashion_mnist", split="test[:10]", download=False)
    assert next(iter(data)).shape[1:] == SHAPE
    assert "dataset_info.json" not in capfd.readouterr().err + caplog.text
