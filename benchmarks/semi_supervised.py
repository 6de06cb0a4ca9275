"""Semi-supervised learning with few labels: test accuracy of model M2 beside a classifier of the same
architecture as its q(y|x) trained on the labeled examples alone, in the same run, with the same
class-balanced labels (seeded) and the same binarized inputs, for each α; beside them, the accuracy of
M2's generative model as a classifier, argmax_y ELBO(x|y). Also M2's cost per epoch relative to the
plain VAE. `--models m1+m2` trains Kingma et al.'s M1+M2 instead (`tfvae.StackedSemiSupervisedVAE`:
M2 on the codes of a plain VAE, M1, trained for `--m1-epochs` on every training image, one M1 per
seed). `--models default` runs what `tfvae train --model semi-supervised --labeled-examples N` trains,
through `tfvae.training.train` with every other setting at its default, beside the labels-only classifier
trained both plainly and with the weight averaging M1+M2 trains with. With `--m1`, also the same labels-only classifier on M1's latent codes: what M1's features
alone add.

    python -m benchmarks.semi_supervised [--quick] [--epochs 10] [--seeds 0 1 2] [--labels 100 1000]
                                         [--alphas 0.1 10] [--architecture mlp | conv] [--m1]
                                         [--models m2 m1+m2 default] [--m1-epochs 20] [--binarize dynamic | static]
                                         [--dataset fashion_mnist | mnist-test] [--bound-weighting data | batch]
                                         [--beta 1] [--objective elbo | iwae] [--num-samples 1]

`fashion_mnist` trains on the 60k training split and tests on the 10k test split; `mnist-test` trains
on MNIST `test[:8000]` (../shared/data/mnist) and tests on `test[8000:]`.
"""

import argparse
import time

import numpy as np

from benchmarks.common import DATASETS, report
from tfvae.names import BOUND_WEIGHTINGS, OBJECTIVES

BATCH_SIZE = 100
# The labels-only classifier sees its few labeled images this many times (freshly binarized each time):
# enough to fit them exactly, as the paper's baseline does.
BASELINE_STEPS = 2000


def labels_only_accuracy(labeled_images, labels, test_images, test_labels, seed, architecture="mlp", averaged=False):
    """Test accuracy of M2's q(y|x) for `architecture` trained on the labeled examples alone; `averaged`: with
    the weight averaging M1+M2 trains with (`tfvae.optimizers.AveragingAdam`)."""
    import keras
    import tensorflow as tf

    from tfvae.models.stacked import StackedSemiSupervisedVAE
    from tfvae.networks import networks_for
    from tfvae.optimizers import AveragingAdam

    keras.utils.set_random_seed(seed)
    classifier = networks_for(architecture)[2](labeled_images.shape[1:], 10)
    logits = keras.Sequential([classifier.body, classifier.to_logits])
    optimizer = (AveragingAdam(1e-3, ema_momentum=StackedSemiSupervisedVAE.weight_averaging) if averaged
                 else keras.optimizers.Adam(1e-3))
    logits.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    batches = tf.data.Dataset.from_tensor_slices((labeled_images, labels)).repeat().shuffle(1000, seed=seed)
    batches = batches.batch(min(BATCH_SIZE, len(labels))).map(
        lambda x, y: (tf.cast(tf.random.uniform(tf.shape(x), seed=int(rng.integers(1 << 30))) < x, tf.float32), y)
    )
    logits.fit(batches, steps_per_epoch=BASELINE_STEPS, epochs=1, verbose=0)
    predictions = np.argmax(logits.predict(test_images, batch_size=1000, verbose=0), axis=1)
    return float(np.mean(predictions == test_labels))


def m1_features_accuracy(m1, labeled_images, labels, test_images, test_labels, seed):
    """Test accuracy of M2's classifier architecture trained on M1's latent codes of the labeled examples
    (a fresh draw z ~ q(z|x) each step), tested on the posterior means of the test images."""
    import keras
    import tensorflow as tf

    from tfvae.networks import mlp_classifier

    keras.utils.set_random_seed(seed)
    posterior = m1.encode(labeled_images)
    classifier = mlp_classifier((1, 1, m1.latent_dim), 10)
    logits = keras.Sequential([classifier.body, classifier.to_logits])
    logits.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    codes = tf.data.Dataset.from_tensor_slices((posterior.mean(), posterior.stddev(), labels)).repeat().shuffle(1000, seed=seed)
    codes = codes.batch(min(BATCH_SIZE, len(labels))).map(
        lambda loc, scale, y: (tf.reshape(loc + scale * tf.random.normal(tf.shape(loc), seed=seed), [-1, 1, 1, m1.latent_dim]), y)
    )
    logits.fit(codes, steps_per_epoch=BASELINE_STEPS, epochs=1, verbose=0)
    test_codes = tf.reshape(m1.encode(test_images).mean(), [-1, 1, 1, m1.latent_dim])
    return float(np.mean(np.argmax(logits.predict(test_codes, batch_size=1000, verbose=0), axis=1) == test_labels))


def default_run(dataset, labeled_examples, seed):
    """Test accuracy and settings of the model `tfvae train --model semi-supervised` trains with these labels,
    trained through `tfvae.training.train` (held-out split: the test split)."""
    import tempfile

    from tfvae.config import RunConfig
    from tfvae.training import train

    source, train_split, test_split = DATASETS[dataset]
    with tempfile.TemporaryDirectory() as directory:
        config = RunConfig.for_model(
            "semi-supervised", dataset=source["name"], data_dir=source.get("data_dir"), download=False,
            train_split=train_split, eval_split=test_split, labeled_examples=labeled_examples, seed=seed,
            output_dir=directory, export_dir="", log_likelihood_samples=0,
        )
        start = time.perf_counter()
        result = train(config, verbose=0)
    settings = config.flat()
    return {"m2_accuracy": result.metrics["accuracy"], "m2_test_elbo": result.metrics["elbo"],
            **{key: settings[key] for key in ("latent_dim", "alpha", "epochs", "m1_epochs", "binarize", "batch_size")},
            "train_s": time.perf_counter() - start}


def generative_accuracy(m2, images, labels, num_samples=10):
    """Accuracy of M2's generative model as a classifier: argmax_y ELBO(x|y) (p(y) uniform), the class
    posterior that the unlabeled bound pulls q(y|x) towards."""
    bounds = np.stack([m2.elbo(images, labels=np.full(len(images), c), num_samples=num_samples, seed=0)
                       for c in range(m2.num_classes)], axis=1)
    return float(np.mean(np.argmax(bounds, axis=1) == labels))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 epoch, one seed, 100 labels")
    parser.add_argument("--dataset", choices=DATASETS, default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--latent-dim", type=int, default=50)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 10.0], help="M2's classification weight α")
    parser.add_argument("--architecture", choices=["mlp", "conv"], default="mlp", help="M2's networks and the baseline's")
    parser.add_argument("--bound-weighting", choices=BOUND_WEIGHTINGS, default="data",
                        help="how M2 adds labeled and unlabeled bounds (SemiSupervisedVAE's bound_weighting)")
    parser.add_argument("--beta", type=float, default=1.0, help="M2's weight on the KL of z (the VAE's beta)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="elbo", help="M2's bound for each class")
    parser.add_argument("--num-samples", type=int, default=1, help="samples of z per (example, class)")
    parser.add_argument("--m1", action="store_true", help="also the labels-only classifier on a plain VAE's latent codes")
    parser.add_argument("--models", choices=["m2", "m1+m2", "default"], nargs="+", default=["m2"],
                        help="M2 on pixels (--architecture), M2 on the codes of an MLP VAE (M1+M2), and/or the command "
                             "line's default semi-supervised model")
    parser.add_argument("--m1-epochs", type=int, default=20, help="epochs of M1 (a plain MLP VAE) on every training image")
    parser.add_argument("--binarize", choices=["dynamic", "static"], default="dynamic",
                        help="the semi-supervised models' training images: freshly binarized each epoch, or once")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.m1_epochs, args.seeds, args.labels, args.alphas = 1, 1, [0], [100], [0.1]

    import keras

    import tfvae
    from tfvae.data import load_dataset
    from tfvae.evaluation import collect

    source, train_split, test_split = DATASETS[args.dataset]
    grey_train, all_labels = collect(load_dataset(**source, split=train_split, binarize=None, shuffle=False,
                                                  with_labels=True, download=False))
    test_images, test_labels = collect(load_dataset(**source, split=test_split, binarize="static", shuffle=False,
                                                    with_labels=True, download=False))
    # M2 as asked for, in the cost-per-epoch measurement and in every seed's run alike.
    m2_options = {"latent_dim": args.latent_dim, "architecture": args.architecture, "beta": args.beta,
                  "bound_weighting": args.bound_weighting, "objective": args.objective, "num_samples": args.num_samples}
    rows, seconds_per_epoch = [], {}
    for model in ("vae", "semi-supervised") if "m2" in args.models else ():  # an epoch's cost, first seed and label count
        keras.utils.set_random_seed(0)
        train = load_dataset(**source, split=train_split, batch_size=BATCH_SIZE, download=False,
                             with_labels=model != "vae", labeled_examples=args.labels[0] if model != "vae" else None)
        vae = (tfvae.VAE.for_images((28, 28, 1), latent_dim=args.latent_dim, architecture=args.architecture)
               if model == "vae" else
               tfvae.SemiSupervisedVAE.for_images((28, 28, 1), 10, **m2_options))
        if model != "vae":
            vae.labeled_fraction = args.labels[0] / len(all_labels)
        vae.compile()
        vae.fit(train, epochs=1, verbose=0)  # compiles
        start = time.perf_counter()
        vae.fit(train, epochs=1, verbose=0)
        seconds_per_epoch[model] = time.perf_counter() - start
    m1_by_seed = {}

    def trained_m1(seed):
        """M1, a plain MLP VAE trained on every training image: one per seed, shared by its rows."""
        if seed not in m1_by_seed:
            keras.utils.set_random_seed(seed)
            m1 = tfvae.VAE.for_images((28, 28, 1), latent_dim=args.latent_dim, seed=seed)
            m1.compile()
            m1.fit(load_dataset(**source, split=train_split, batch_size=BATCH_SIZE, download=False, seed=seed),
                   epochs=args.m1_epochs, verbose=0)
            m1_by_seed[seed] = m1
        return m1_by_seed[seed]

    if args.m1:
        binary_train = collect(load_dataset(**source, split=train_split, binarize="static", shuffle=False, download=False))[0]
    # M1+M2's M2 takes M2's options but the architecture: it is an MLP on M1's codes.
    code_options = {key: value for key, value in m2_options.items() if key != "architecture"}
    for labeled_examples in args.labels:
        for seed in args.seeds:
            kept = tfvae.data.keep_labels(all_labels, labeled_examples, seed)
            chosen = kept >= 0
            baseline = labels_only_accuracy(grey_train[chosen], kept[chosen], test_images, test_labels, seed,
                                            args.architecture)
            if args.m1:
                rows.append({
                    "dataset": args.dataset, "labels": labeled_examples, "seed": seed, "m1_epochs": args.m1_epochs,
                    "m1_features_accuracy": m1_features_accuracy(trained_m1(seed), binary_train[chosen], kept[chosen],
                                                                 test_images, test_labels, seed),
                    "labels_only_accuracy": baseline,
                })
                print(rows[-1], flush=True)
            if "default" in args.models:
                averaged = labels_only_accuracy(grey_train[chosen], kept[chosen], test_images, test_labels, seed,
                                                args.architecture, averaged=True)
                rows.append({"dataset": args.dataset, "model": "default", "labels": labeled_examples, "seed": seed,
                             **default_run(args.dataset, labeled_examples, seed), "labels_only_accuracy": baseline,
                             "labels_only_averaged_accuracy": averaged})
                print(rows[-1], flush=True)
            for alpha in args.alphas:
                for model in (model for model in args.models if model != "default"):
                    m1 = trained_m1(seed) if model == "m1+m2" else None
                    keras.utils.set_random_seed(seed)
                    train = load_dataset(**source, split=train_split, batch_size=BATCH_SIZE, download=False, seed=seed,
                                         with_labels=True, labeled_examples=labeled_examples, binarize=args.binarize)
                    if m1 is None:
                        options = m2_options
                        m2 = tfvae.SemiSupervisedVAE.for_images((28, 28, 1), 10, alpha=alpha, seed=seed, **options)
                    else:
                        options = {**code_options, "architecture": "mlp", "m1_epochs": args.m1_epochs}
                        m2 = tfvae.StackedSemiSupervisedVAE.on_codes_of(m1, 10, alpha=alpha, seed=seed, **code_options)
                    m2.labeled_fraction = labeled_examples / len(all_labels)
                    m2.compile()
                    start = time.perf_counter()
                    m2.fit(train, epochs=args.epochs, verbose=0)
                    rows.append({
                        "dataset": args.dataset, "model": model, "labels": labeled_examples, "alpha": alpha, **options,
                        "binarize": args.binarize, "seed": seed, "epochs": args.epochs, "m2_accuracy": m2.accuracy(test_images, test_labels),
                        "labels_only_accuracy": baseline, "m2_train_s": time.perf_counter() - start,
                    })
                    if m1 is None:
                        rows[-1]["m2_generative_accuracy"] = generative_accuracy(m2, test_images, test_labels)
                        rows[-1]["m2_test_elbo"] = float(np.mean(m2.elbo(test_images, labels=test_labels, seed=0)))
                    print(rows[-1], flush=True)
    for labeled_examples in args.labels:
        if "default" in args.models:
            mine = [row for row in rows if row["labels"] == labeled_examples and row.get("model") == "default"]
            rows.append({"dataset": args.dataset, "model": "default", "labels": labeled_examples, "seed": "mean",
                         **{key: float(np.mean([row[key] for row in mine]))
                            for key in ("m2_accuracy", "labels_only_accuracy", "labels_only_averaged_accuracy")}})
        for alpha in args.alphas:
            for model in (model for model in args.models if model != "default"):
                mine = [row for row in rows
                        if row["labels"] == labeled_examples and row.get("alpha") == alpha and row.get("model") == model]
                rows.append({
                    "dataset": args.dataset, "model": model, "architecture": mine[0]["architecture"],
                    "labels": labeled_examples, "alpha": alpha, "bound_weighting": args.bound_weighting, "seed": "mean",
                    "m2_accuracy": float(np.mean([row["m2_accuracy"] for row in mine])),
                    "labels_only_accuracy": float(np.mean([row["labels_only_accuracy"] for row in mine])),
                })
        if args.m1:
            mine = [row for row in rows if row["labels"] == labeled_examples and "m1_features_accuracy" in row]
            rows.append({"dataset": args.dataset, "labels": labeled_examples, "seed": "mean",
                         "m1_features_accuracy": float(np.mean([row["m1_features_accuracy"] for row in mine]))})
    if seconds_per_epoch:
        rows.append({"dataset": args.dataset, "architecture": args.architecture,
                     "vae_s_per_epoch": seconds_per_epoch["vae"], "m2_s_per_epoch": seconds_per_epoch["semi-supervised"],
                     "m2_cost_ratio": seconds_per_epoch["semi-supervised"] / seconds_per_epoch["vae"]})
    report("semi_supervised", rows)


if __name__ == "__main__":
    main()
