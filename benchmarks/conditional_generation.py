"""Conditional generation: does a ConditionalVAE give samples of the class asked for?

An independent convolutional classifier, trained on the real training images (and scored on the real
held-out ones), labels `--samples` images drawn from a ConditionalVAE (the same number of each class)
after `--epochs` epochs; the figure is the share it assigns to the requested class. The model is
`tfvae.ConditionalVAE.for_images(shape, num_classes)` at its defaults unless options say otherwise.

    python -m benchmarks.conditional_generation [--quick] [--dataset fashion_mnist | mnist-test]
        [--epochs 10] [--seeds 0] [--samples 1000] [--latent-dim N] [--beta B] [--prior NAME] [--prior-draw-weight W]

`fashion_mnist` trains on the 60k training split and tests on the 10k test split; `mnist-test` trains
on MNIST `test[:8000]` (../shared/data/mnist) and tests on `test[8000:]`.
"""

import argparse
import time

import numpy as np

from benchmarks.common import report
from benchmarks.semi_supervised import DATASETS

CLASSIFIER_EPOCHS = 5


def independent_classifier(images, labels, seed):
    """A small convolutional network trained on real grey-level images: the judge of generated ones."""
    import keras

    keras.utils.set_random_seed(seed)
    classifier = keras.Sequential([
        keras.Input(images.shape[1:]),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dropout(0.3), keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ])
    classifier.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(images, labels, batch_size=128, epochs=CLASSIFIER_EPOCHS, verbose=0)
    return lambda x: np.argmax(classifier.predict(x, batch_size=1000, verbose=0), axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 epoch, 200 samples")
    parser.add_argument("--dataset", choices=DATASETS, default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--samples", type=int, default=1000, help="generated images, the same number of each class")
    parser.add_argument("--latent-dim", type=int, help="[default: ConditionalVAE.for_images's]")
    parser.add_argument("--beta", type=float, help="weight of the KL of z [default: the model's]")
    parser.add_argument("--prior", help="a prior's name in tfvae.registry.PRIORS [default: ConditionalVAE.for_images's]")
    parser.add_argument("--prior-draw-weight", type=float, help="Sohn et al.'s hybrid weight [default: the model's]")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.samples = 1, 200

    import tfvae
    from tfvae.data import load_dataset
    from tfvae.evaluation import collect

    source, train_split, test_split = DATASETS[args.dataset]
    options = {"batch_size": 500, "shuffle": False, "with_labels": True, "download": False, **source}
    real_train, train_labels = collect(load_dataset(split=train_split, binarize=None, **options))
    real_test, test_labels = collect(load_dataset(split=test_split, binarize=None, **options))
    model_options = {key: value for key, value in (("latent_dim", args.latent_dim), ("beta", args.beta), ("prior", args.prior),
                                                   ("prior_draw_weight", args.prior_draw_weight)) if value is not None}
    rows = []
    for seed in args.seeds:
        judge = independent_classifier(real_train, train_labels, seed)
        train = load_dataset(split=train_split, seed=seed, **{**options, "shuffle": True, "batch_size": 128})
        model = tfvae.ConditionalVAE.for_images(real_train.shape[1:], num_classes=10, seed=seed, **model_options)
        model.compile()
        start = time.perf_counter()
        model.fit(train, epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - start
        requested = np.repeat(np.arange(10), args.samples // 10)
        samples = model.sample(len(requested), seed=seed, labels=requested).numpy()
        binary_test = collect(load_dataset(split=test_split, binarize="static", **options))[0]
        elbo = float(np.mean(model.elbo(binary_test, labels=test_labels, seed=0)))
        reconstructions = model.reconstruct(binary_test[:1000], labels=test_labels[:1000]).numpy()
        rows.append({
            "dataset": args.dataset, "seed": seed, "epochs": args.epochs, "latent_dim": model.latent_dim,
            "beta": model.initial_beta, "prior": type(model.prior).__name__,
            "prior_draw_weight": model.prior_draw_weight, "samples_of_requested_class": float(np.mean(judge(samples) == requested)),
            "judge_accuracy_on_real": float(np.mean(judge(real_test) == test_labels)),
            # The same images as the model reconstructs them: how far its decoder's means are recognisable at all.
            "judge_accuracy_on_reconstructions": float(np.mean(judge(reconstructions) == test_labels[:1000])),
            "per_class": [round(float(np.mean(judge(samples)[requested == c] == c)), 2) for c in range(10)],
            "held_out_elbo_given_y": elbo, "seconds_per_epoch": seconds / args.epochs,
        })
    report("conditional_generation", rows)


if __name__ == "__main__":
    main()
