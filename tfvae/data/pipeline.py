"""From in-memory uint8 images to batched float images in [0, 1], fast enough to never stall training.

Batches are gathered from the whole array by shuffled indices, so the per-example
work of an element-wise pipeline is never paid.
"""

import tensorflow as tf

from tfvae import names

# Batches prepared ahead of the model; fixed rather than autotuned, because the
# autotuner's thread stalls fit() for seconds at every epoch end on this stack.
PREFETCH_BATCHES = 4

# Batches binarized at once (in order): one per core of a 2-core machine.
PARALLEL_BATCHES = 2

# Semi-supervised training: the least share of each batch given to labeled examples (cycled), as in
# Kingma et al. 2014's code; without it 100 labels among 60 000 images meet a batch of 128 once in 5 steps.
LABELED_SHARE = 0.1


def _binarize(images, seed):
    """Bernoulli(intensity / 255) pixels as float32, from uint8 images and a stateless seed.

    Each 32 random bits give two 16-bit uniforms u, and P(u < pixel * 257) =
    pixel / 255.004: within 2e-5 of exact, at half the random-number cost of
    one float per pixel (the cost that dominated the input pipeline).
    """
    size = tf.size(images)
    bits = tf.random.stateless_uniform(
        tf.reshape((size + 1) // 2, [1]), seed=seed, minval=None, maxval=None, dtype=tf.uint32
    )
    noise = tf.reshape(tf.reshape(tf.bitcast(bits, tf.uint16), [-1])[:size], tf.shape(images))
    return tf.cast(noise < tf.cast(images, tf.uint16) * 257, tf.float32)


def make_pipeline(
    images,
    labels,
    batch_size,
    binarize=None,
    shuffle=True,
    seed=0,
    with_labels=False,
    drop_remainder=False,
    observed=None,
):
    """A `tf.data` pipeline over `images` (N, H, W, C) uint8 and `labels` (N,).

    `observed` (bool, the images' shape) marks known pixels; the others become NaN,
    which is how models built with `missing_data=True` see missing pixels.

    `binarize="dynamic"` draws fresh binary pixels for every batch of every
    epoch; "static" binarizes each image once with `seed`, the same whatever
    the batching; None keeps grey levels. Shuffled labeled data where few
    labels are known (−1 marks the rest) gets `LABELED_SHARE` of every batch
    from the labeled examples, cycled; an epoch is one pass over the unlabeled ones.
    """
    if binarize not in names.BINARIZATIONS:
        raise ValueError(f"Unknown binarize {binarize!r}. Expected one of {names.BINARIZATIONS}.")
    images = tf.constant(images)
    labels = tf.constant(labels)
    hide = _hiding(observed)
    if binarize == "static":
        images = tf.cast(_binarize(images, tf.constant([seed, 0], tf.int64)) * 255, tf.uint8)
    if shuffle and with_labels and _needs_mixing(labels.numpy(), batch_size):
        batches = _mixed_indices(labels.numpy(), batch_size, seed, drop_remainder)
    else:
        batches = _batched_indices(int(images.shape[0]), batch_size, shuffle, seed, drop_remainder)
    if binarize == "dynamic":
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        batches = tf.data.Dataset.zip(batches, seeds).map(
            lambda index, batch_seed: (hide(_binarize(tf.gather(images, index), batch_seed), index), tf.gather(labels, index)),
            num_parallel_calls=PARALLEL_BATCHES,
        )
    else:
        batches = batches.map(
            lambda index: (hide(tf.cast(tf.gather(images, index), tf.float32) / 255.0, index), tf.gather(labels, index))
        )
    if not with_labels:
        batches = batches.map(lambda batch_images, _: batch_images)
    return _finish(batches)


def _hiding(observed):
    """(batch, indices) -> the batch with NaN where `observed` is False; the identity without a mask."""
    if observed is None:
        return lambda batch, index: batch
    observed = tf.constant(observed, tf.bool)
    return lambda batch, index: tf.where(tf.gather(observed, index), batch, float("nan"))


def _batched_indices(count, batch_size, shuffle, seed, drop_remainder=False):
    """Batches of example indices, reshuffled every epoch when `shuffle`."""
    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    return indices.batch(batch_size, drop_remainder=drop_remainder)


def _needs_mixing(labels, batch_size):
    known = int((labels >= 0).sum())
    return 0 < known < len(labels) * LABELED_SHARE and batch_size >= 2


def _mixed_indices(labels, batch_size, seed, drop_remainder=False):
    """Batches of indices, each `LABELED_SHARE` labeled (cycled, reshuffled) and the rest unlabeled."""
    labeled_per_batch = max(1, round(batch_size * LABELED_SHARE))
    labeled = tf.data.Dataset.from_tensor_slices(tf.where(labels >= 0)[:, 0])
    unlabeled = tf.data.Dataset.from_tensor_slices(tf.where(labels < 0)[:, 0])
    labeled = labeled.repeat().shuffle(int((labels >= 0).sum()), seed=seed, reshuffle_each_iteration=True)
    unlabeled = unlabeled.shuffle(int((labels < 0).sum()), seed=seed, reshuffle_each_iteration=True)
    return tf.data.Dataset.zip(
        unlabeled.batch(batch_size - labeled_per_batch, drop_remainder=drop_remainder), labeled.batch(labeled_per_batch)
    ).map(lambda u, l: tf.concat([u, l], 0))


def _as_tensors(arrays):
    """The arrays as constants (floating ones as float32), once."""
    return tf.nest.map_structure(
        lambda a: tf.constant(a, tf.float32 if tf.as_dtype(a.dtype).is_floating else None), arrays
    )


def _indices(arrays, batch_size, shuffle, seed):
    """Batches of indices into `arrays` (tensors), shuffled each epoch; (images, labels) with few labels known
    are mixed as in `make_pipeline`."""
    count = int(tf.nest.flatten(arrays)[0].shape[0])
    labels = arrays[1].numpy() if isinstance(arrays, tuple) and len(arrays) == 2 and arrays[1].dtype.is_integer else None
    if shuffle and labels is not None and _needs_mixing(labels, batch_size):  # semi-supervised (images, labels)
        return _mixed_indices(labels, batch_size, seed)
    return _batched_indices(count, batch_size, shuffle, seed)


def array_pipeline(arrays, batch_size, shuffle=True, seed=None):
    """Batches of in-memory arrays (one array, or a tuple of equal-length ones) gathered by shuffled index.

    What `fit` uses for NumPy input: the arrays become constants once, and each
    batch is one gather, so no per-example work is paid. (images, labels) with few
    labels known are mixed as in `make_pipeline`.
    """
    return gathered(*index_pipeline(arrays, batch_size, shuffle, seed))


def index_pipeline(arrays, batch_size, shuffle=True, seed=None):
    """(one epoch's batches of indices, the arrays as tensors): `array_pipeline` before its gather, for `gathered`
    or `index_blocks`."""
    arrays = _as_tensors(arrays)
    return _indices(arrays, batch_size, shuffle, seed), arrays


def gathered(indices, arrays):
    """The batches of `arrays` that the batches of `indices` point to."""
    return _finish(indices.map(lambda index: tf.nest.map_structure(lambda array: tf.gather(array, index), arrays)))


def index_blocks(indices, steps):
    """The batches of `indices`, `steps` at a time as ragged (steps, batch) blocks, epoch after epoch without end.

    An epoch's last block may hold fewer batches, and only its last batch may be smaller. For a fused training
    loop that draws one block per execution and gathers inside its compiled program (`tfvae.fused_steps`): the
    input pipeline is paid once per execution rather than once per step, and one iterator lasts the whole fit.
    """
    return _finish(indices.ragged_batch(steps).repeat())


def _finish(batches):
    """Prefetch and the options every tfvae pipeline shares."""
    batches = batches.prefetch(PREFETCH_BATCHES)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    # Every worker builds the same pipeline (same seeds) and keeps its share of the batches.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return batches.with_options(options)
