"""The training machinery every tfvae model shares, written once.

A model says *what* its loss is (`compute_terms`: per-example terms, with
"loss" the one minimized) and what data it takes (`check_data`); this class
says *how* a step runs: train/test steps, one XLA program per execution,
seeds that differ per step and per replica, `keras.metrics.Mean` trackers,
strategies, mixed precision, fast input for NumPy arrays, and batched
inference with progress.
"""

import contextlib
import logging
import math
import sys

import keras
import numpy as np
import tensorflow as tf

from tfvae import strategies
from tfvae._version import __version__
from tfvae.data.pipeline import array_pipeline, gathered, index_blocks, index_pipeline
from tfvae.distributions import RANDOM_ALGORITHM
from tfvae.errors import InvalidInput
from tfvae.fused_steps import fused_step_function
from tfvae.limits import check_count
from tfvae.optimizers import AveragingAdam
from tfvae.validation import checked_batches, input_check_message

logger = logging.getLogger("tfvae")

# Steps per call into the compiled training function unless told otherwise: per-launch overhead
# was ~1/4 of a small model's step at 1 (benchmarks/RESULTS.md); `fit` lowers it to an epoch's steps.
DEFAULT_STEPS_PER_EXECUTION = 16

# Batch size `fit` uses for NumPy arrays when none is given (Keras's default).
DEFAULT_BATCH_SIZE = 32

# Elements (samples x batch x pixels) of one importance-sampling chunk: bounds memory for large K, and at
# 2**21 (8 MB) ran 1.2x faster under XLA on CPU than at 2**24 (benchmarks/evaluation_throughput.py).
IWAE_CHUNK_ELEMENTS = 2**21


def _is_array(data):
    return isinstance(data, np.ndarray) or (tf.is_tensor(data) and not tf.is_symbolic_tensor(data))


def _float32_if_floating(array):
    array = array if tf.is_tensor(array) else np.asarray(array)
    return tf.cast(array, tf.float32) if array.dtype in (np.float16, np.float64, tf.float16, tf.float64) else array


@contextlib.contextmanager
def _input_errors():
    """A failed in-graph input check (`validation.checked_batches`) as one clear `InvalidInput`."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        message = input_check_message(error)
        if message is None:
            raise
        raise InvalidInput(message) from None


class BaseVAE(keras.Model):
    """Shared training machinery; subclasses define `compute_terms`, `check_data` and `tracked`, and list the
    Keras objects their config holds serialized in `parts`.

    `fit`, `evaluate` and `predict` behave as in Keras, with these defaults:
    `default_optimizer()` (Adam(1e-3)); XLA chosen by `tfvae.strategies.choose_jit_compile` (an
    explicit `jit_compile` wins); `steps_per_execution=16`, lowered to the
    epoch's steps. With several steps per execution, epoch-level callbacks
    see every epoch exactly, while batch-level callbacks (and the progress
    bar) see the end of each execution, i.e. every 16th batch.
    """

    # The per-example terms `fit` and `evaluate` report, in nats per example.
    tracked = ("loss", "reconstruction", "kl", "elbo")

    # Constructor arguments that are Keras objects (networks, priors, models), serialized in the config.
    parts = ()

    # Momentum of the moving average of the weights that `default_optimizer` keeps and `fit` ends on
    # (Keras's `use_ema`); None trains without one.
    weight_averaging = None

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.tracked}
        self._eval_functions = {}

    # What subclasses define -----------------------------------------------------

    def compute_terms(self, data, seed, training=False):
        """Per-example terms of one batch `data` (as `fit` yields it): a dict of (B,) tensors.

        "loss" is minimized (its gradient is the chosen estimator's); a term may
        also be a (values, weights) pair, averaged with those weights.
        """
        raise NotImplementedError

    def check_data(self, x, y=None, name="x"):
        """Raises ValueError with a clear message unless `x` (and `y`) are data this model trains on."""
        raise NotImplementedError

    # Compiling ------------------------------------------------------------------

    def compile(self, optimizer=None, jit_compile="auto", steps_per_execution=DEFAULT_STEPS_PER_EXECUTION, **kwargs):
        """Like `keras.Model.compile`, with `default_optimizer()`, tfvae's XLA rule and several steps per execution.

        `jit_compile="auto"` asks `tfvae.strategies.choose_jit_compile` (XLA on
        GPU/TPU and for dense models on CPU, off for convolutions on CPU and
        where it cannot compile) and logs its choice; True or False is obeyed.
        """
        if optimizer is None:
            optimizer = self.default_optimizer()
        super().compile(optimizer=optimizer, **kwargs)
        self.configure_execution(jit_compile, steps_per_execution)

    def default_optimizer(self, learning_rate=1e-3):
        """Adam at `learning_rate`; where the model has a `weight_averaging` momentum, `tfvae.optimizers.AveragingAdam`
        (`fit` then ends on the average of its last steps' weights)."""
        if self.weight_averaging is None:
            return keras.optimizers.Adam(learning_rate)
        return AveragingAdam(learning_rate, ema_momentum=self.weight_averaging)

    def configure_execution(self, jit_compile="auto", steps_per_execution=DEFAULT_STEPS_PER_EXECUTION):
        """Sets XLA and steps per execution for the current strategy (also after loading a checkpoint)."""
        check_count("steps_per_execution", steps_per_execution)
        self._requested_execution = {"jit_compile": jit_compile, "steps_per_execution": steps_per_execution}
        strategy = tf.distribute.get_strategy()
        jit, reason = strategies.choose_jit_compile(self, strategy, jit_compile)
        if getattr(self, "_announced_execution", None) != (jit, reason):  # once, not again for a resumed run
            logger.info("XLA %s: %s.", "on" if jit else "off", reason)
            self._announced_execution = (jit, reason)
        self.jit_compile = jit
        self.steps_per_execution = strategies.resolve_steps_per_execution(steps_per_execution, strategy)
        self.train_function = self.test_function = self.predict_function = None
        self._eval_functions = {}

    def get_compile_config(self):
        """Keras's compile config with the settings asked for ("auto" stays "auto"), so a loaded model runs as fast."""
        config = super().get_compile_config()
        return {**config, **self._requested_execution} if config else config

    def compile_from_config(self, config):
        """Restores the compiled state (optimizer included) when a saved model is loaded."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(
            optimizer=config.get("optimizer"),
            jit_compile=config.get("jit_compile", "auto"),
            steps_per_execution=config.get("steps_per_execution", DEFAULT_STEPS_PER_EXECUTION),
        )
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    # Seeds ----------------------------------------------------------------------

    def _seed(self, seed=None):
        """An int32 stateless seed pair: from the model's generator, or from an int (or int tensor)."""
        if seed is None:
            return tf.cast(self.seed_generator.next(), tf.int32)
        return tf.stack([tf.cast(seed, tf.int32), 0])

    def _step_seed(self):
        """The seed of one training or test step, distinct on every replica.

        Replicas run the same step with the same generator state; folding in the
        replica id keeps their noise independent.
        """
        seed = self._seed()
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
            seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(replica_id, tf.int32), alg=RANDOM_ALGORITHM)
        return seed

    # Steps ----------------------------------------------------------------------

    def _update_trackers(self, terms):
        for name, tracker in self.trackers.items():
            values = terms[name]
            if isinstance(values, tuple):
                tracker.update_state(values[0], sample_weight=values[1])
            else:
                tracker.update_state(values)
        return self._tracker_results()

    def _tracker_results(self):
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        strategy = tf.distribute.get_strategy()
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.num_replicas_in_sync > 1:
            # Keras reduces several workers' step outputs with a MEAN along axis 0, which needs rank >= 1
            # (a single worker's are passed on unreduced, as scalars).
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def train_step(self, data):
        """One optimizer step on the loss of `compute_terms`, scaled so that the gradients summed over replicas are the
        single-device gradient; returns the metric trackers' values."""
        with tf.GradientTape() as tape:
            terms = self.compute_terms(data, self._step_seed(), training=True)
            # Gradients are summed over replicas, so each replica's mean loss is
            # scaled to make the total equal the single-device gradient.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = tf.reduce_mean(tf.cast(terms["loss"], tf.float32)) / replicas
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._update_trackers(terms)

    def test_step(self, data):
        """The terms of `compute_terms` for a batch, into the metric trackers, without a gradient (`evaluate`, validation)."""
        return self._update_trackers(self.compute_terms(data, self._step_seed()))

    def _fuses_steps(self):
        """Whether `fit`/`evaluate` run each execution's steps in one XLA program: with XLA on,
        several steps per execution, no distribution strategy (replicas use Keras's loop) and no
        convolutions (XLA's CPU convolutions inside a compiled loop ran 14x slower than one per launch)."""
        return (
            not strategies.has_convolutions(self)
            and self.jit_compile
            and not self.run_eagerly
            and isinstance(self.steps_per_execution, int)
            and self.steps_per_execution > 1
            and not tf.distribute.has_strategy()
            and self.distribute_strategy is tf.distribute.get_strategy()
        )

    def make_train_function(self, force=False):
        """Keras's training function, or one XLA program for each execution's steps where the model fuses them
        (`tfvae.fused_steps`: XLA on, dense networks, no distribution strategy)."""
        if self.train_function is None or force:
            if self._fuses_steps():
                self.train_function = fused_step_function(self.train_step, self.steps_per_execution, self._tracker_results)
            else:
                super().make_train_function(force)
        return self.train_function

    def make_test_function(self, force=False):
        """Keras's evaluation function, or one XLA program for each execution's steps, as `make_train_function`."""
        if self.test_function is None or force:
            if self._fuses_steps():
                self.test_function = fused_step_function(self.test_step, self.steps_per_execution, self._tracker_results)
            else:
                super().make_test_function(force)
        return self.test_function

    # fit / evaluate / predict ---------------------------------------------------

    def _as_dataset(self, x, y, batch_size, shuffle):
        """NumPy inputs as tfvae's gather-by-index pipeline (arrays stay in memory; no per-example work)."""
        if not _is_array(x):
            return x, y, batch_size
        arrays = x if y is None else (x, y)
        dataset = array_pipeline(arrays, batch_size or DEFAULT_BATCH_SIZE, shuffle=shuffle, seed=self.seed)
        return dataset, None, None

    def _fit_steps_per_execution_to(self, dataset, steps=None):
        """Lowers `steps_per_execution` to the steps of one pass over `dataset`, saying so once."""
        if steps is None and isinstance(dataset, tf.data.Dataset):
            cardinality = int(dataset.cardinality())
            steps = cardinality if cardinality > 0 else None
        if steps is not None and isinstance(self.steps_per_execution, int) and self.steps_per_execution > steps:
            logger.warning(
                "steps_per_execution is %d, not %d: an epoch has only %d steps.", steps, self.steps_per_execution, steps
            )
            self.steps_per_execution = steps
            self.train_function = self.test_function = None

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, **kwargs):
        """Keras's `fit` on images: NumPy arrays (integer labels as `y` for models of labels; -1 = unknown where allowed) go
        through tfvae's gather-by-index pipeline (where steps are fused, blocks of indices only, one per execution: the
        compiled program gathers each batch); arrays and datasets are checked against the likelihood's support.
        Reports `loss`, `reconstruction`, `kl` and `elbo` in nats per example."""
        self.check_data(x, y)
        validation_x, validation_y = validation_data, None
        if isinstance(validation_data, (tuple, list)):
            validation_x, validation_y = validation_data[0], (validation_data[1] if len(validation_data) > 1 else None)
        self.check_data(validation_x, validation_y, "validation_data")
        x, validation_data = self._checked_input(x), self._checked_input(validation_data, "validation_data")
        gather_from = None  # the training arrays, when the compiled program gathers each batch from them
        if not validation_split and kwargs.get("sample_weight") is None:
            if validation_x is not None and _is_array(validation_x):
                validation_data, _, _ = self._as_dataset(validation_x, validation_y, batch_size, False)
            if _is_array(x) and self.compiled and self._fuses_steps() and "steps_per_epoch" not in kwargs:
                indices, arrays = index_pipeline(x if y is None else (x, y), batch_size or DEFAULT_BATCH_SIZE,
                                                 shuffle=shuffle, seed=self.seed)
                self._fit_steps_per_execution_to(indices)
                if self._fuses_steps():  # one block of indices per execution, one iterator for the whole fit
                    x, gather_from = index_blocks(indices, self.steps_per_execution), arrays
                else:  # an epoch too short to fuse: gather in the pipeline
                    x = gathered(indices, arrays)
                y, batch_size, kwargs["steps_per_epoch"] = None, None, int(indices.cardinality())
            else:
                arrays_alone = _is_array(x) and "steps_per_epoch" not in kwargs
                x, y, batch_size = self._as_dataset(x, y, batch_size, shuffle)
                if arrays_alone:  # Keras then makes one iterator per epoch, not two (the fused path's epochs exactly)
                    kwargs["steps_per_epoch"] = int(x.cardinality())
        if gather_from is None and ("steps_per_epoch" in kwargs or isinstance(x, tf.data.Dataset)):
            self._fit_steps_per_execution_to(x, kwargs.get("steps_per_epoch"))  # the fused arrays path did above
        with _input_errors(), self._gathering_from(gather_from):
            return super().fit(
                x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                validation_split=validation_split, validation_data=validation_data,
                shuffle=shuffle and not isinstance(x, tf.data.Dataset), **kwargs,
            )

    @contextlib.contextmanager
    def _gathering_from(self, arrays):
        """While `fit` runs on blocks of indices into `arrays` (tensors), its fused train function gathers each
        batch from them inside the compiled program; nothing changes without `arrays`."""
        train = self.make_train_function() if arrays is not None else None
        if train is not None:
            self.train_function = lambda iterator: train(iterator, arrays)
        try:
            yield
        finally:
            if train is not None:
                self.train_function = train

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras's `evaluate` on images (and labels), checked as `fit` checks them: the held-out terms `fit` reports."""
        self.check_data(x, y)
        x = self._checked_input(x)
        if kwargs.get("sample_weight") is None:
            x, y, batch_size = self._as_dataset(x, y, batch_size, False)
        with _input_errors():
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    def _checked_input(self, data, name="x"):
        """A `tf.data` dataset whose batches are checked as they flow (`validation.checked_batches`): pixels in
        the likelihood's support, labels in range. Arrays, checked whole before, pass unchanged."""
        if not isinstance(data, tf.data.Dataset):
            return data
        return checked_batches(data, self.data_support, self.num_classes, self.allows_unlabeled, self.missing_data, name)

    def predict(self, x, *args, **kwargs):
        """Keras's `predict` on checked images: what `call` returns, the reconstruction means."""
        self.check_data(x)
        return super().predict(x, *args, **kwargs)

    # Batched inference ------------------------------------------------------------

    def _eval_function(self, name, fn):
        """`fn` as a tf.function, compiled with XLA when the model's XLA setting (or rule) says so."""
        if name not in self._eval_functions:
            jit = self._jit_compile if self.compiled else strategies.choose_jit_compile(self)[0]
            self._eval_functions[name] = tf.function(fn, jit_compile=bool(jit), reduce_retracing=True)
        return self._eval_functions[name]

    def _map_batches(self, fn, arrays, batch_size, seed, progress=None):
        """`fn(batch, batch_seed)` over batches of `arrays` (a tuple of equal-length arrays), outputs concatenated.

        Batch seeds derive from `seed` and the batch's position, so results do not
        depend on `batch_size`'s split of the work order. `progress` names a stage
        shown with a progress bar in a terminal (one log line elsewhere).
        """
        arrays = tuple(_float32_if_floating(a) for a in arrays)
        total = int(arrays[0].shape[0])
        base_seed = self._seed(seed)
        bar = None
        if progress:
            logger.info("%s: %d examples.", progress, total)
            bar = keras.utils.Progbar(total, verbose=1 if sys.stdout.isatty() else 0)
        outputs = []
        for start in range(0, total, batch_size):
            batch = tuple(tf.convert_to_tensor(a[start : start + batch_size]) for a in arrays)
            outputs.append(fn(*batch, tf.random.experimental.stateless_fold_in(base_seed, start)))
            if bar is not None:
                bar.update(min(total, start + batch_size))
        return tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *outputs)

    # Bounds and log-likelihoods of images, in batches ---------------------------------

    def _data_arrays(self, images, labels):
        """The checked arrays batched inference maps over: (images,) or (images, labels)."""
        raise NotImplementedError

    def _elbo_terms(self, images, seed, labels, num_samples):
        """Per-example elbo, reconstruction and kl of a float32 batch (labels None: none given)."""
        raise NotImplementedError

    def _log_likelihood(self, images, seed, labels, num_samples, chunk_size):
        """The importance-sampled log-likelihood of a float32 batch, `chunk_size` samples at a time."""
        raise NotImplementedError

    def _evaluations_per_image(self, labels):
        """How many bounds one image costs: one per class for a model of labels asked without them, else one."""
        return self.num_classes if self.num_classes and labels is None else 1

    def _chunk_size(self, num_samples, batch_size):
        """Importance samples evaluated at once, so that a chunk holds about `IWAE_CHUNK_ELEMENTS` pixels."""
        return max(1, min(num_samples, IWAE_CHUNK_ELEMENTS // (batch_size * math.prod(self.image_shape))))

    def elbo_terms(self, images, num_samples=None, batch_size=256, seed=None, labels=None):
        """Per-example `elbo`, `reconstruction` and `kl` (nats) as a dict of (N,) tensors.

        A model of labels without `labels` sums over the label (`tfvae.objectives.label_marginal_terms`).
        """
        num_samples = self.num_samples if num_samples is None else check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)

        def terms(batch, *labels_and_seed):
            *labels, batch_seed = labels_and_seed
            return self._elbo_terms(batch, batch_seed, labels[0] if labels else None, num_samples)

        arrays = self._data_arrays(images, labels)
        return self._map_batches(self._eval_function(f"elbo{num_samples}-{len(arrays)}", terms), arrays, batch_size,
                                 seed)

    def elbo(self, images, num_samples=None, batch_size=256, seed=None, labels=None):
        """Per-example ELBO in nats: a lower bound on log p(x) (on log p(x|y) with labels; a model of labels
        without them bounds log p(x), the label summed out)."""
        return self.elbo_terms(images, num_samples, batch_size, seed, labels)["elbo"]

    def log_likelihood(self, images, num_samples=5000, batch_size=100, seed=None, progress=None, labels=None):
        """Per-example importance-sampled estimate of log p(x) (log p(x|y) with labels) in nats: the IWAE bound.

        Uses q(z|x) as proposal with `num_samples` (K) draws, evaluated in
        chunks so large K fits in memory; the estimate rises towards log p(x) as K grows.
        A model of labels without `labels` estimates log Σ_y p(y) p(x|y), each class from its own K draws.
        For images with missing (NaN) pixels, of a model built with `missing_data`, it estimates log p(x_o).
        `progress` (a stage name) shows a progress bar in a terminal.
        """
        check_count("num_samples", num_samples)
        check_count("batch_size", batch_size)
        arrays = self._data_arrays(images, labels)
        chunk_size = self._chunk_size(num_samples, batch_size * self._evaluations_per_image(labels))

        def bound(batch, *labels_and_seed):
            *labels, batch_seed = labels_and_seed
            return self._log_likelihood(batch, batch_seed, labels[0] if labels else None, num_samples, chunk_size)

        return self._map_batches(
            self._eval_function(f"iwae{num_samples}-{chunk_size}-{len(arrays)}", bound), arrays, batch_size, seed, progress
        )

    def get_config(self):
        """The constructor's arguments, its parts serialized, and the tfvae version that wrote them."""
        config = {**super().get_config(), "seed": self.seed, "tfvae_version": __version__}
        return {**config, **{name: keras.saving.serialize_keras_object(getattr(self, name)) for name in self.parts}}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("tfvae_version", None)
        for name in cls.parts:
            if name in config:  # files written before a part existed take its default
                config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)

