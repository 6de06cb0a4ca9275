"""Which labels a semi-supervised run may see: a class-balanced, seeded choice; the rest become −1."""

import numpy as np

UNLABELED = -1


def keep_labels(labels, labeled_examples, seed=0):
    """`labels` with all but `labeled_examples` of them replaced by −1, the same number from every class.

    The choice depends on `seed` only, so runs with the same seed see the same
    labeled examples.
    """
    labels = np.asarray(labels)
    known = labels[labels >= 0]
    if known.size == 0:
        raise ValueError("This split has no labels, so none can be kept. Choose a dataset with labels.")
    classes = np.unique(known)
    if not isinstance(labeled_examples, (int, np.integer)) or labeled_examples < len(classes):
        raise ValueError(
            f"Expected labeled_examples to be an integer >= {len(classes)} (one per class). "
            f"Received: labeled_examples={labeled_examples!r}"
        )
    counts = {int(c): int(np.sum(labels == c)) for c in classes}
    # The largest class-balanced choice this split can give, and no more than was asked for.
    possible = len(classes) * min(labeled_examples // len(classes), min(counts.values()))
    if labeled_examples % len(classes):
        raise ValueError(
            f"labeled_examples={labeled_examples} does not divide into the {len(classes)} classes. "
            f"Use a multiple of {len(classes)}, e.g. {possible}."
        )
    per_class = labeled_examples // len(classes)
    if labeled_examples > known.size or min(counts.values()) < per_class:
        scarcest = min(counts, key=counts.get)
        raise ValueError(
            f"labeled_examples={labeled_examples} needs {per_class} examples of each class, but the split has "
            f"{known.size} labeled examples and only {counts[scarcest]} of class {scarcest}. Use at most {possible} "
            "labeled examples, or a larger split."
        )
    rng = np.random.default_rng(seed)
    kept = np.full_like(labels, UNLABELED)
    for c in classes:
        chosen = rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
        kept[chosen] = c
    return kept
