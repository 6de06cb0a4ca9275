"""Labels: the conditional VAE and model M2 against independent computations, real data, saving, errors."""

import json

import keras
import numpy as np
import pytest
import scipy.special
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import MNIST_CLI, invoke_cli

import tfvae
from tfvae.config import read_run_config
from tfvae.data.labels import keep_labels

SHAPE = (28, 28, 1)


def conditional(**options):
    return tfvae.ConditionalVAE.for_images(SHAPE, num_classes=10, latent_dim=4, seed=0, **options)


def semi_supervised(**options):
    return tfvae.SemiSupervisedVAE.for_images(SHAPE, num_classes=10, latent_dim=4, seed=0, **options)


@pytest.fixture(scope="module")
def labeled(binarized_mnist, mnist_test_labels):
    """(train images, train labels, held-out images, held-out labels) from the MNIST test split."""
    train, held_out = binarized_mnist
    return train, mnist_test_labels[:8000], held_out, mnist_test_labels[8000:]


@pytest.fixture(scope="module")
def trained_m2(labeled):
    """M2 after one epoch on 2000 examples, 100 of them labeled: q(y|x) is no longer uniform."""
    images, labels = labeled[0][:2000], keep_labels(labeled[1][:2000], 100, seed=0)
    keras.utils.set_random_seed(0)
    vae = semi_supervised()
    vae.compile()
    vae.fit(images, labels, batch_size=100, epochs=1, verbose=0)
    return vae


def test_m2_unlabeled_bound_is_the_class_average_of_labeled_bounds_plus_entropy(trained_m2, labeled):
    images = tf.constant(labeled[2][:16])
    seed = tf.constant([3, 4], tf.int32)
    unlabeled = trained_m2.compute_terms((images, tf.fill([16], -1)), seed)["elbo"].numpy()
    # L(x, c) for every class c: the same noise, since the model draws it for all (class, example) pairs at once.
    given = np.stack([trained_m2.compute_terms((images, tf.fill([16], c)), seed)["elbo"].numpy() for c in range(10)])
    probs = trained_m2.classify(images).probs_parameter().numpy().astype(np.float64)  # (16, 10)
    entropy = -np.sum(probs * np.log(probs), axis=1)
    assert entropy.min() < np.log(10) - 0.05  # a trained classifier: the check weighs classes unequally
    np.testing.assert_allclose(unlabeled, np.sum(probs * given.T, axis=1) + entropy, rtol=1e-5, atol=1e-2)


def test_unlabeled_examples_never_enter_the_classification_loss(trained_m2, labeled):
    images = tf.constant(labeled[2][:8])
    labels = np.array([3, -1, -1, 7, -1, 0, -1, -1], np.int32)
    seed = tf.constant([5, 6], tf.int32)
    losses = {}
    for alpha in (0.0, 1000.0):
        trained_m2.alpha = alpha
        losses[alpha] = trained_m2.compute_terms((images, labels), seed, training=True)["loss"].numpy()
    trained_m2.alpha = 0.1
    unlabeled = labels < 0
    np.testing.assert_allclose(losses[1000.0][unlabeled], losses[0.0][unlabeled], rtol=1e-6)
    # Labeled examples gain α·B/N_l · −log q(y|x): 1000 · 8/3 times each one's cross-entropy.
    probs = trained_m2.classify(images).probs_parameter().numpy()
    cross_entropy = -np.log(probs[~unlabeled, labels[~unlabeled]])
    np.testing.assert_allclose(losses[1000.0][~unlabeled] - losses[0.0][~unlabeled], 1000 * 8 / 3 * cross_entropy,
                               rtol=1e-4)
    metrics = trained_m2.compute_terms((images, labels), seed)
    _, weights = metrics["classification"]
    np.testing.assert_array_equal(weights.numpy(), (~unlabeled).astype(np.float32))


def test_bound_weighting_decides_what_a_labeled_examples_bound_counts(trained_m2, labeled):
    images = tf.constant(labeled[2][:8])
    labels = np.array([3, -1, -1, 7, -1, 0, -1, -1], np.int32)
    seed = tf.constant([5, 6], tf.int32)
    trained_m2.alpha, fraction = 0.0, trained_m2.labeled_fraction
    unweighted = trained_m2.compute_terms((images, labels), seed)["loss"].numpy()  # as in evaluation
    try:
        trained_m2.labeled_fraction = 0.01
        data = trained_m2.compute_terms((images, labels), seed, training=True)["loss"].numpy()
        trained_m2.bound_weighting = "batch"
        batch = trained_m2.compute_terms((images, labels), seed, training=True)["loss"].numpy()
    finally:
        trained_m2.alpha, trained_m2.labeled_fraction, trained_m2.bound_weighting = 0.1, fraction, "data"
    labeled_ones = labels >= 0
    # "data": the 3 labeled of 8 stand for 1% of the data set, the 5 unlabeled for 99%.
    np.testing.assert_allclose(data[labeled_ones], 0.01 * 8 / 3 * unweighted[labeled_ones], rtol=1e-5)
    np.testing.assert_allclose(data[~labeled_ones], 0.99 * 8 / 5 * unweighted[~labeled_ones], rtol=1e-5)
    # "batch": every example counts once, whatever the labeled share.
    np.testing.assert_allclose(batch, unweighted, rtol=1e-6)


def test_batch_weighted_m2_fits_a_dataset_without_a_labeled_share_and_keeps_its_weighting(labeled, tmp_path):
    images, labels = labeled[0][:1000], keep_labels(labeled[1][:1000], 100, seed=0)
    vae = semi_supervised(bound_weighting="batch")
    vae.compile()
    history = vae.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(100), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and not vae.labeled_fraction_known
    vae.save(tmp_path / "m2.keras")
    assert keras.models.load_model(tmp_path / "m2.keras").bound_weighting == "batch"
    with pytest.raises(ValueError, match="Expected bound_weighting in"):
        semi_supervised(bound_weighting="labeled")


def test_evaluate_reports_the_classifier_accuracy_on_labeled_data(trained_m2, labeled):
    _, _, images, labels = labeled
    results = trained_m2.evaluate(images[:1000], labels[:1000], batch_size=100, verbose=0, return_dict=True)
    predictions = trained_m2.classify(images[:1000]).mode().numpy()
    assert results["accuracy"] == pytest.approx(np.mean(predictions == labels[:1000]), abs=1e-6)
    assert results["accuracy"] == pytest.approx(trained_m2.accuracy(images[:1000], labels[:1000]), abs=1e-6)


def test_conditional_elbo_lies_below_log_likelihood_which_rises_with_k(labeled):
    train, train_labels, held_out, held_out_labels = labeled
    keras.utils.set_random_seed(1)
    vae = conditional()
    vae.compile()
    vae.fit(train[:4000], train_labels[:4000], batch_size=100, epochs=2, verbose=0)
    images, labels = held_out[:200], held_out_labels[:200]
    elbo = float(np.mean(vae.elbo(images, labels=labels, seed=0)))
    small_k = float(np.mean(vae.log_likelihood(images, num_samples=10, labels=labels, seed=0)))
    large_k = float(np.mean(vae.log_likelihood(images, num_samples=500, labels=labels, seed=0)))
    assert elbo < small_k < large_k, (elbo, small_k, large_k)
    # The labels matter: the bound given the wrong class is lower.
    wrong = float(np.mean(vae.elbo(images, labels=(labels + 1) % 10, seed=0)))
    assert wrong < elbo - 1, (wrong, elbo)


@pytest.mark.parametrize("make", [conditional, semi_supervised], ids=["conditional", "semi-supervised"])
def test_labeled_models_round_trip_through_keras_files(make, labeled, tmp_path):
    train, train_labels, held_out, held_out_labels = labeled
    vae = make()
    vae.compile()
    history = vae.fit(train[:500], train_labels[:500], batch_size=100, epochs=1, verbose=0).history
    assert isinstance(vae, tfvae.SemiSupervisedVAE) or {"classification", "consistency"} <= set(history)
    path = tmp_path / "model.keras"
    vae.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(vae) and loaded.num_classes == 10
    images, labels = held_out[:50], held_out_labels[:50]
    np.testing.assert_allclose(loaded.elbo(images, labels=labels, seed=2), vae.elbo(images, labels=labels, seed=2), rtol=1e-5)
    np.testing.assert_allclose(loaded.sample(10, labels=np.arange(10), seed=3), vae.sample(10, labels=np.arange(10), seed=3),
                               atol=1e-6)
    if isinstance(vae, tfvae.SemiSupervisedVAE):
        np.testing.assert_allclose(loaded.classify(images).probs_parameter(), vae.classify(images).probs_parameter(),
                                   atol=1e-6)
        assert loaded.alpha == vae.alpha and loaded.labeled_fraction == vae.labeled_fraction == 1.0
    else:  # the auxiliary classifier and its weight come back too
        np.testing.assert_allclose(loaded.classifier(images).logits, vae.classifier(images).logits, atol=1e-5)
        assert loaded.class_consistency_weight == vae.class_consistency_weight == 10.0
    # Training continues from the restored optimizer state.
    assert int(loaded.optimizer.iterations) == int(vae.optimizer.iterations) == 5
    loaded.fit(train[:500], train_labels[:500], batch_size=100, epochs=1, verbose=0)
    assert int(loaded.optimizer.iterations) == 10


def test_class_consistency_judges_the_decoders_images_with_the_classifier_held_fixed(labeled):
    from tfvae import objectives

    vae = conditional()
    images, labels = tf.constant(labeled[2][:16]), tf.constant(labeled[3][:16])
    codes = tf.constant(np.random.default_rng(0).normal(size=(16, 4)), tf.float32)
    prior = tfp.distributions.MultivariateNormalDiag(codes, tf.fill([16, 4], 1e-6))  # draws are the codes themselves
    decode = lambda z: vae.decoder(z, labels)
    with tf.GradientTape(persistent=True) as tape:
        terms = objectives.class_consistency_terms(images, labels, vae.classifier, decode, prior, tf.constant([1, 2]))
        totals = {name: tf.reduce_sum(value) for name, value in terms.items()}
    # A second computation: the classifier's log-softmax at the real images and at the decoder's means of the codes.
    log_softmax = lambda x: scipy.special.log_softmax(vae.classifier(x).logits.numpy().astype(np.float64), axis=1)
    rows = np.arange(16), labels.numpy()
    np.testing.assert_allclose(terms["classification"], -log_softmax(images)[rows], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terms["consistency"], -log_softmax(decode(codes).mean())[rows], rtol=1e-4, atol=1e-4)
    # The classifier learns from real images only; the decoder learns from its judgement of generated ones.
    gradient = lambda term, part: tape.gradient(totals[term], part.trainable_variables)
    assert all(g is None or not np.any(g) for g in gradient("consistency", vae.classifier))
    assert any(g is not None and np.any(g) for g in gradient("consistency", vae.decoder))
    assert all(g is not None and np.all(np.isfinite(g)) for g in gradient("classification", vae.classifier))
    assert all(g is None for g in gradient("classification", vae.decoder))


def test_a_conditional_models_loss_adds_the_classifier_terms_and_leaves_its_bounds(labeled):
    vae = conditional()
    data, seed = (tf.constant(labeled[2][:16]), tf.constant(labeled[3][:16])), tf.constant([3, 4])
    terms = vae.compute_terms(data, seed)
    alone = tfvae.VAE.compute_terms(vae, data, seed)  # the same model's terms without the classifier
    np.testing.assert_allclose(terms["loss"], alone["loss"] + terms["classification"] + 10.0 * terms["consistency"],
                               rtol=1e-5)
    for name in ("elbo", "reconstruction", "kl"):
        np.testing.assert_array_equal(terms[name], alone[name])
    assert conditional(class_consistency_weight=0).classifier is None
    assert conditional(missing_data=True).classifier is None  # a classifier needs whole images
    with pytest.raises(ValueError, match="pass the classifier too"):
        tfvae.ConditionalVAE(vae.encoder, vae.decoder, class_consistency_weight=1.0)
    with pytest.raises(ValueError, match="Expected class_consistency_weight >= 0"):
        conditional(class_consistency_weight=-1)


def test_keep_labels_is_class_balanced_and_seeded(mnist_test_labels):
    kept = keep_labels(mnist_test_labels, 100, seed=4)
    assert np.sum(kept >= 0) == 100
    np.testing.assert_array_equal(np.bincount(kept[kept >= 0]), np.full(10, 10))
    np.testing.assert_array_equal(kept[kept >= 0], mnist_test_labels[kept >= 0])  # kept labels are the true ones
    np.testing.assert_array_equal(kept, keep_labels(mnist_test_labels, 100, seed=4))
    assert not np.array_equal(kept, keep_labels(mnist_test_labels, 100, seed=5))


@pytest.mark.parametrize(
    "count, message",
    [(105, "does not divide into the 10 classes"), (20000, "needs 2000 examples of each class"),
     (5, "an integer >= 10"), (10.0, "an integer >= 10")],
)
def test_keep_labels_rejects_counts_it_cannot_honour(count, message, mnist_test_labels):
    with pytest.raises(ValueError, match=message):
        keep_labels(mnist_test_labels, count)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.full(100, 10), r"labels of x in \[0, 10\)"),
        (np.full(100, -1), r"labels of x in \[0, 10\)"),
        (np.zeros(100, np.float32), "Convert with labels.astype"),
        (np.zeros(99, np.int64), r"shape \(100,\), one per example"),
        (None, "This model is conditional: pass the labels of x"),
    ],
)
def test_conditional_fit_rejects_bad_labels(labels, message, labeled):
    vae = conditional()
    vae.compile()
    with pytest.raises(ValueError, match=message):
        vae.fit(labeled[0][:100], labels, batch_size=50, verbose=0)


def test_labeled_models_reject_unlabeled_datasets_and_wrong_label_counts(labeled):
    images = labeled[0][:100]
    vae = semi_supervised()
    vae.compile()
    with pytest.raises(ValueError, match="to yield .images, integer labels. pairs"):
        vae.fit(tf.data.Dataset.from_tensor_slices(images).batch(50), verbose=0)
    with pytest.raises(ValueError, match="every label is -1"):
        vae.fit(images, np.full(100, -1), verbose=0)
    with pytest.raises(ValueError, match="labeled_fraction"):
        vae.fit(tf.data.Dataset.from_tensor_slices((images, np.zeros(100, np.int64))).batch(50), verbose=0)
    with pytest.raises(ValueError, match=r"labels of shape \(3,\)"):
        vae.sample(3, labels=[1, 2])
    with pytest.raises(ValueError, match="unconditional and takes no labels"):
        tfvae.VAE.for_images(SHAPE, latent_dim=4).sample(3, labels=1)


def test_semi_supervised_fit_on_a_dataset_with_a_known_labeled_share(labeled):
    images, labels = labeled[0][:1000], keep_labels(labeled[1][:1000], 100, seed=0)
    vae = semi_supervised()
    vae.labeled_fraction = 0.1
    vae.compile()
    history = vae.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(100), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 0 <= history["accuracy"][0] <= 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "m2", "--labeled-examples", "105"], "does not divide into the 10 classes"),
        (["--model", "m2", "--labeled-examples", "2000"], "needs 200 examples of each class"),
        (["--model", "conditional", "--labeled-examples", "100"], "--labeled-examples applies to --model semi-supervised"),
        (["--model", "conditional", "--bound-weighting", "batch"], "--bound-weighting applies to --model semi-supervised"),
        (["--model", "vae", "--alpha", "10"], "--alpha applies to --model semi-supervised or m2, not to --model vae"),
    ],
)
def test_cli_rejects_labeled_example_counts_it_cannot_honour(args, message, tmp_path):
    result = invoke_cli("train", *MNIST_CLI, "--train-split", "test[:1000]", *args, "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_conditional_samples_are_recognised_as_the_requested_class(labeled, mnist_test_images):
    train, train_labels, _, held_out_labels = labeled
    # An independent judge: a small convolutional classifier trained on the same split's grey-level images.
    keras.utils.set_random_seed(0)
    judge = keras.Sequential([
        keras.Input(SHAPE),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    judge.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    judge.fit(mnist_test_images[:8000], train_labels, batch_size=64, epochs=4, verbose=0)
    judge_accuracy = judge.evaluate(mnist_test_images[8000:], held_out_labels, verbose=0)[1]
    assert judge_accuracy > 0.95, judge_accuracy

    # A 2-d latent space leaves the class to the label (measured: 99% recognised; 74% at 8 dims, 69% at 20,
    # where z ~ p(z) often falls where the 8000 training codes never were).
    vae = tfvae.ConditionalVAE.for_images(SHAPE, num_classes=10, latent_dim=2, seed=0)
    vae.compile()
    vae.fit(train, train_labels, batch_size=100, epochs=30, verbose=0)
    requested = np.repeat(np.arange(10), 100)
    images = vae.sample(len(requested), labels=requested, seed=0)
    recognised = np.argmax(judge.predict(np.asarray(images), verbose=0), axis=1)
    per_class = [np.mean(recognised[requested == c] == c) for c in range(10)]
    assert np.mean(recognised == requested) >= 0.8, per_class


@pytest.mark.slow
def test_cli_m2_run_reports_accuracy_and_exports_a_classifier(tmp_path):
    run, export_dir = tmp_path / "run", tmp_path / "export"
    result = invoke_cli(
        "train", *MNIST_CLI, "--model", "m2", "--labeled-examples", "100", "--bound-weighting", "batch",
        "--train-split", "test[:2000]", "--eval-split", "test[9000:9500]", "--epochs", "2", "--latent-dim", "8", "--log-likelihood-samples", "20",
        "--output-dir", str(run), "--export-dir", str(export_dir), "--quiet",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["accuracy"] <= 1 and metrics["elbo"] < metrics["log_likelihood"] < 0, metrics
    config = read_run_config(run / "run_config.json").flat()
    assert config["model"] == "m2" and config["labeled_examples"] == 100
    assert config["bound_weighting"] == "batch"
    assert keras.models.load_model(max(run.rglob("epoch-*.keras"))).bound_weighting == "batch"
    # samples.png: one row per class, ten classes.
    samples = keras.utils.load_img(run / "samples.png")
    assert samples.size[1] > 9 * 28

    served = tf.saved_model.load(str(export_dir / "1"))
    images = tf.constant(np.zeros((4, *SHAPE), np.float32))
    probabilities = served.signatures["classify"](images=images)["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    drawn = served.signatures["sample"](labels=tf.constant([0, 1, 2], tf.int32), seed=tf.constant(0))["images"]
    assert drawn.shape == (3, *SHAPE)
    elbo = served.signatures["elbo"](images=images, labels=tf.constant([1, 1, 1, 1], tf.int32))
    assert np.all(np.isfinite(elbo["elbo"].numpy()))

    completed = invoke_cli("complete", str(run), *MNIST_CLI, "--split", "test[9000:9020]", "--mask", "random:0.5",
                           "--num-samples", "50", "--draws", "0", "--out", str(tmp_path / "c.png"), "--json")
    assert completed.exit_code == 0, completed.output  # completion given the true labels of a labeled model
    assert json.loads(completed.stdout)["num_examples"] == 20

    out = tmp_path / "sevens.png"
    result = invoke_cli("sample", str(run), "--label", "7", "-n", "8", "--out", str(out))
    assert result.exit_code == 0 and out.exists(), result.output
    result = invoke_cli("sample", str(run), "--label", "12", "--out", str(out))
    assert result.exit_code == 2 and "--label 12 is not a class of" in result.output and "whose classes are 0 to 9" in \
        " ".join(result.output.split()) and "Traceback" not in result.output, result.output


@pytest.mark.slow
def test_cli_semi_supervised_trains_m1_then_m2_resumes_and_serves(tmp_path):
    run, export_dir = tmp_path / "run", tmp_path / "export"
    options = ["train", *MNIST_CLI, "--model", "semi-supervised", "--labeled-examples", "100", "--train-split", "test[:2000]",
               "--eval-split", "test[9000:9500]", "--m1-epochs", "2", "--latent-dim", "8", "--log-likelihood-samples", "5",
               "--hidden-units", "64,32", "--output-dir", str(run), "--export-dir", str(export_dir), "--quiet"]
    result = invoke_cli(*options, "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "M1+M2, stage 1" in result.output
    m1_config = read_run_config(run / "m1" / "run_config.json").flat()
    assert (m1_config["model"], m1_config["epochs"], m1_config["labeled_examples"]) == ("vae", 2, None)
    config = read_run_config(run / "run_config.json").flat()
    # The kind's own defaults where the command line said nothing: the measured recipe.
    assert (config["model"], config["binarize"], config["batch_size"], config["alpha"]) == ("semi-supervised", "static", 100, 10.0)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["accuracy"] <= 1 and metrics["elbo"] < metrics["log_likelihood"] < 0, metrics
    model = tfvae.load_model(run)
    assert isinstance(model, tfvae.StackedSemiSupervisedVAE) and not model.m1.trainable
    dense_units = lambda network: [layer.units for layer in network.body.layers if isinstance(layer, keras.layers.Dense)]
    assert m1_config["hidden_units"] == (64, 32) and dense_units(model.m1.encoder) == [64, 32]  # --hidden-units sizes M1
    assert dense_units(model.m2.encoder) == [500]  # M2 on the codes keeps the paper's size

    m1_files = {path: path.stat().st_mtime_ns for path in (run / "m1").rglob("*") if path.is_file()}
    result = invoke_cli(*options, "--epochs", "2", "--resume")  # M1 is finished: M2 continues from its checkpoint
    assert result.exit_code == 0, result.output
    assert "M1+M2, stage 1" not in result.output  # M1 is in M2's checkpoint: not loaded, trained or evaluated again
    assert {path: path.stat().st_mtime_ns for path in (run / "m1").rglob("*") if path.is_file()} == m1_files
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch-*.keras")) == ["epoch-0001.keras", "epoch-0002.keras"]
    served = tf.saved_model.load(str(export_dir / "2"))
    probabilities = served.signatures["classify"](images=tf.zeros((3, *SHAPE)))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    out = tmp_path / "sevens.png"
    result = invoke_cli("sample", str(run), "--label", "7", "-n", "8", "--out", str(out))  # through M2's p(z1|y)
    assert result.exit_code == 0 and out.exists(), result.output
    # The questions about images go to M1, on the command line too.
    for command in (["reconstruct", "-n", "4", "--out", tmp_path / "r.png"],
                    ["complete", "-n", "4", "--num-samples", "10", "--draws", "1", "--out", tmp_path / "c.png"]):
        result = invoke_cli(command[0], str(run), "--split", "test[9000:9010]", *command[1:])
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    result = invoke_cli("gradient-variance", str(run), "--split", "test[9000:9010]", "--batch-size", "2", "--num-draws", "2")
    assert result.exit_code == 1 and "Measure M1 instead" in result.output and "Traceback" not in result.output, result.output
    result = invoke_cli("gradient-variance", str(run / "m1"), "--split", "test[9000:9010]", "--batch-size", "2",
                        "--num-draws", "2", "--objective", "iwae", "--estimator", "vimco", "--num-samples", "3", "--json",
                        "--out", tmp_path / "g.png")
    assert result.exit_code == 0 and '"vimco"' in result.output, result.output


# Models of labels answer without labels ------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_conditional(labeled):
    images, labels = labeled[0][:2000], labeled[1][:2000]
    keras.utils.set_random_seed(2)
    vae = conditional()
    vae.compile()
    vae.fit(images, labels, batch_size=100, epochs=2, verbose=0)
    return vae


def per_class(vae, method, images, **options):
    """`method` given each class in turn, stacked: (C, N)."""
    return np.stack([getattr(vae, method)(images, labels=np.full(len(images), c), **options).numpy()
                     for c in range(vae.num_classes)])


def bound_errors(vae, images, num_samples, draws=200):
    """(C, N) standard errors of `num_samples`-draw estimates of ELBO(x|y), from the spread of `draws` single draws."""
    single = per_class(vae, "elbo", np.repeat(images, draws, axis=0), num_samples=1, seed=7)
    return single.reshape(vae.num_classes, len(images), draws).std(axis=-1, ddof=1) / np.sqrt(num_samples)


def assert_within_monte_carlo_error(marginal, expected, weights, errors):
    """`marginal` and `expected`, two independent estimates of a bound whose error is Σ_y weights·(class error),
    agree within four standard errors of their difference. The classes' errors share their noise draws (one seed
    for all), so Σ_y weights·errors, their sum's standard error at any correlation, bounds each side's."""
    tolerance = 4 * np.sqrt(2) * np.sum(weights * errors, axis=0) + 0.05
    assert np.median(tolerance) < np.log(10), tolerance  # sharp enough to see a mistake of log C
    assert np.all(np.abs(marginal - expected) <= tolerance), (marginal - expected, tolerance)


def test_a_conditional_models_bound_without_labels_is_the_log_sum_exp_of_its_class_bounds(trained_conditional, labeled):
    images = labeled[2][:20]
    marginal = trained_conditional.elbo(images, num_samples=2000, seed=1).numpy()
    given = per_class(trained_conditional, "elbo", images, num_samples=2000, seed=2)
    # log Σ_y p(y) exp ELBO(x|y): the best bound over distributions of y; its error is the softmax-weighted one
    # of the class bounds.
    assert_within_monte_carlo_error(marginal, scipy.special.logsumexp(given, axis=0) - np.log(10),
                                    scipy.special.softmax(given, axis=0), bound_errors(trained_conditional, images, 2000))
    # log Σ_y p(y) p(x|y), each class from its own draws. Importance estimates of a 2-epoch model are noisy and
    # heavy-tailed, so the marginal is estimated 8 times over (seeds 10-17): their spread s is that of one such
    # estimate, the per-class one included, and the two sides agree within t(7 dof, 99.9%) = 5.4 standard errors.
    replicates = np.stack([trained_conditional.log_likelihood(images[:5], num_samples=5000, seed=seed).numpy()
                           for seed in range(10, 18)])
    log_likelihood, spread = replicates.mean(axis=0), replicates.std(axis=0, ddof=1)
    each = per_class(trained_conditional, "log_likelihood", images[:5], num_samples=5000, seed=4)
    tolerance = 5.4 * spread * np.sqrt(1 + 1 / len(replicates)) + 0.1
    assert np.sum(tolerance < np.log(10)) >= 2, tolerance  # sharp enough to see a mistake of log C on some images
    assert np.all(np.abs(log_likelihood - (scipy.special.logsumexp(each, axis=0) - np.log(10))) <= tolerance)
    assert np.all(marginal[:5] < log_likelihood + 0.5) and np.all(log_likelihood > given[:, :5].max(axis=0) - np.log(10))


def test_m2s_bound_without_labels_sums_the_class_bounds_under_q(trained_m2, labeled):
    images = labeled[2][:20]
    marginal = trained_m2.elbo(images, num_samples=2000, seed=1).numpy()
    given = per_class(trained_m2, "elbo", images, num_samples=2000, seed=2)  # (C, N): bounds on log p(x|y)
    q = trained_m2.classify(images).probs_parameter().numpy().T.astype(np.float64)
    expected = np.sum(q * (given - np.log(10)), axis=0) - np.sum(q * np.log(q), axis=0)
    assert_within_monte_carlo_error(marginal, expected, q, bound_errors(trained_m2, images, 2000))


def test_models_of_labels_sample_and_complete_without_labels(trained_conditional, trained_m2, labeled):
    images = labeled[2][:6]
    observed = tfvae.masks.make("top_half", SHAPE)
    for model in (trained_conditional, trained_m2):
        assert model.sample(12, seed=5).shape == (12, *SHAPE)
        np.testing.assert_array_equal(model.sample(12, seed=5), model.sample(12, seed=5))
        mixture = model.complete(images, observed, num_samples=50, seed=1).numpy()
        each = np.stack([model.complete(images, observed, num_samples=50, seed=1, labels=np.full(6, c)).numpy()
                         for c in range(10)])
        # Σ_y p(y|x_o) E[x_m | x_o, y]: each pixel lies between the classes' completions, observed ones kept.
        assert np.all(mixture >= each.min(axis=0) - 1e-5) and np.all(mixture <= each.max(axis=0) + 1e-5)
        np.testing.assert_array_equal(mixture[:, :14], images[:, :14])
        drawn = model.complete(images, observed, num_samples=50, seed=1, draws=3).numpy()
        assert drawn.shape == (3, 6, *SHAPE) and np.isin(drawn[:, :, 14:], (0.0, 1.0)).all()
        assert np.isfinite(model.completion_log_likelihood(images, observed, num_samples=50, seed=1)).all()


@pytest.mark.slow
def test_m1_plus_m2_is_a_model_of_images_evaluated_beside_its_accuracy(labeled):
    from tfvae import evaluation

    images, labels, held_out, held_out_labels = labeled
    keras.utils.set_random_seed(3)
    m1 = tfvae.VAE.for_images(SHAPE, latent_dim=8, seed=0)
    m1.compile()
    m1.fit(images[:2000], batch_size=100, epochs=3, verbose=0)
    model = tfvae.StackedSemiSupervisedVAE.on_codes_of(m1, 10, latent_dim=4, hidden_units=(64,), seed=0)
    model.compile()
    model.fit(images[:2000], keep_labels(labels[:2000], 100, seed=0), batch_size=100, epochs=2, verbose=0)
    metrics = evaluation.evaluate(model, held_out[:200], log_likelihood_samples=50, labels=held_out_labels[:200])
    # A bound on log p(x) under M1's p(x|z1) with M2's p(z1), below its importance-sampled estimate.
    assert metrics["elbo"] < metrics["log_likelihood"] < 0 and 0 < metrics["accuracy"] <= 1
    assert metrics["active_units"] <= 8 and metrics["latent_dim"] == 8
    assert model.sample(4, labels=3, seed=1).shape == (4, *SHAPE)
