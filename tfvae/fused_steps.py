"""`steps_per_execution` steps in one XLA program.

Keras runs each of the `steps_per_execution` steps as a separate XLA launch
inside a TensorFlow while loop; on CPU every launch costs about as much as a
small VAE's whole step. Here the batches of one execution are stacked and a
single compiled program loops over them, the way TPU training loops run.
Training on in-memory arrays goes further: the input pipeline moves one block of
an execution's batches of indices per execution, and each step gathers its batch
from the arrays inside the program.
"""

import tensorflow as tf


def fused_step_function(step_function, steps, results_function):
    """A Keras `train_function`/`test_function` running `steps` calls of `step_function` per call.

    The returned function takes a `tf.data.Iterator`, draws up to `steps`
    batches and returns `results_function()` (the metric results) after
    running them; it raises `StopIteration` when the iterator is exhausted,
    as Keras expects. Batches shaped like the call's first run stacked in one
    launch, the others (an epoch's smaller last batch) one launch each. Given
    `gather_from` (the arrays, as tensors), each element of the iterator is
    instead a block of a call's batches of indices into them
    (`tfvae.data.pipeline.index_blocks`), gathered inside the compiled program.
    """
    step = tf.autograph.experimental.do_not_convert(step_function)

    def run(batch, gather_from):
        if gather_from is not None:
            batch = tf.nest.map_structure(lambda array: tf.gather(array, batch), gather_from)
        return step(batch)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def run_stacked(stacked, count, gather_from):
        def body(i):
            run(tf.nest.map_structure(lambda batch: batch[i], stacked), gather_from)
            return (i + 1,)

        tf.while_loop(lambda i: i < count, body, (tf.constant(0),))
        return results_function()

    run_one = tf.function(run, jit_compile=True, reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    @tf.autograph.experimental.do_not_convert
    def run_on_iterator(iterator):
        optionals = [iterator.get_next_as_optional() for _ in range(steps)]
        available = tf.add_n([tf.cast(o.has_value(), tf.int32) for o in optionals])

        def run_available():
            # The iterator fills a prefix of the slots; empty ones repeat the first batch, unused. The batches
            # shaped like the first (all but an epoch's smaller last one) run stacked in one launch, the rest
            # one launch each, in order.
            first = optionals[0].get_value()
            batches = [first] + [
                tf.cond(o.has_value(), o.get_value, lambda: first) for o in optionals[1:]
            ]
            shaped_like_first = [
                tf.reduce_all([tf.reduce_all(tf.equal(tf.shape(a), tf.shape(b)))
                               for a, b in zip(tf.nest.flatten(first), tf.nest.flatten(batch))])
                for batch in batches
            ]
            leading = tf.minimum(available, tf.reduce_sum(tf.math.cumprod(tf.cast(shaped_like_first, tf.int32))))
            stackable = [
                tf.cond(same, lambda batch=batch: batch, lambda: first) for same, batch in zip(shaped_like_first, batches)
            ]
            stack = tf.nest.map_structure(lambda *parts: tf.stack(parts), *stackable)
            ran_stacked = _done(run_stacked(stack, leading, None))

            def rest_one_by_one():
                for index, batch in enumerate(batches):
                    tf.cond((leading <= index) & (index < available),
                            lambda batch=batch: _done(run_one(batch, None)), lambda: tf.constant(True))
                return tf.constant(True)

            with tf.control_dependencies([ran_stacked]):
                return tf.cond(leading < available, rest_one_by_one, lambda: tf.constant(True))

        ran = tf.cond(available > 0, run_available, lambda: tf.constant(True))
        with tf.control_dependencies([ran]):
            return available, results_function()

    @tf.function(reduce_retracing=True)
    @tf.autograph.experimental.do_not_convert
    def run_block(iterator, gather_from):
        block = iterator.get_next()  # ragged (steps, batch) indices: only the last batch may be smaller
        lengths = block.row_lengths()
        count = tf.cast(block.nrows(), tf.int32)

        def all_stacked():
            return _done(run_stacked(block.to_tensor(), count, gather_from))

        def stacked_then_smaller_last():
            with tf.control_dependencies([_done(run_stacked(block[:-1].to_tensor(), count - 1, gather_from))]):
                return _done(run_one(block[-1], gather_from))

        ran = tf.cond(tf.reduce_all(tf.equal(lengths, lengths[0])), all_stacked, stacked_then_smaller_last)
        with tf.control_dependencies([ran]):
            return results_function()

    def function(iterator, gather_from=None):
        if gather_from is not None:
            return run_block(iterator, gather_from)
        available, results = run_on_iterator(iterator)
        if int(available) == 0:
            raise StopIteration
        return results

    return function


def _done(outputs):
    """A True that runs after `outputs` (so a `tf.cond` branch can discard them)."""
    with tf.control_dependencies(tf.nest.flatten(outputs)):
        return tf.constant(True)
