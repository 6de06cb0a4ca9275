"""From (uint8 image, label) examples to batched float images in [0, 1], fast enough to never stall training."""

import tensorflow as tf

# Batches prepared ahead of the model; fixed rather than autotuned, because the
# autotuner's thread stalls fit() for seconds at every epoch end on this stack.
PREFETCH_BATCHES = 4


def _to_unit_interval(images):
    return tf.cast(images, tf.float32) / 255.0


def _static_binarize(seed):
    """Binarizes each example once, seeded by its index, so every pass sees the same pixels."""

    def binarize(index, example):
        image, label = example
        noise = tf.random.stateless_uniform(tf.shape(image), seed=tf.stack([seed, index]))
        return tf.cast(noise < _to_unit_interval(image), tf.uint8) * 255, label

    return binarize


def _dynamic_binarize(images, labels, seed_pair):
    """Resamples every pixel as Bernoulli(intensity), with fresh seeds each epoch."""
    noise = tf.random.stateless_uniform(tf.shape(images), seed=seed_pair)
    return tf.cast(noise < images, tf.float32), labels


BINARIZATIONS = (None, "static", "dynamic")


def make_pipeline(
    examples,
    num_examples,
    batch_size,
    binarize=None,
    shuffle=True,
    seed=0,
    with_labels=False,
    drop_remainder=False,
):
    """Caches decoded examples in memory, shuffles, batches, binarizes and prefetches."""
    if binarize not in BINARIZATIONS:
        raise ValueError(f"Unknown binarize {binarize!r}. Expected one of {BINARIZATIONS}.")
    if binarize == "static":
        examples = examples.enumerate().map(_static_binarize(seed), num_parallel_calls=2)
    dataset = examples.cache()
    if shuffle:
        dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(lambda images, labels: (_to_unit_interval(images), labels))
    if binarize == "dynamic":
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda batch, seed_pair: _dynamic_binarize(*batch, seed_pair)
        )
    if not with_labels:
        dataset = dataset.map(lambda images, labels: images)
    dataset = dataset.prefetch(PREFETCH_BATCHES)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    # Every worker builds the same pipeline (same seeds) and keeps its share of the batches.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
