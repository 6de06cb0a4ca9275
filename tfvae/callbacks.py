"""Training callbacks: KL warm-up, a guard that stops a diverging run with a clear message, and TensorBoard pictures."""

import math
import pathlib

import keras
import numpy as np

from tfvae.names import check_warmup_applies


class KLWarmup(keras.callbacks.Callback):
    """Anneals the model's β linearly from 0 to `target` over `warmup_epochs` (KL warm-up).

    Starting with a small KL weight lets the decoder learn to use z before the
    KL term pulls q(z|x) onto the prior, a common remedy for posterior collapse
    (Bowman et al. 2016; Sønderby et al. 2016). β is set at the start of each
    epoch from the absolute epoch number, so resumed runs follow the same schedule.
    """

    def __init__(self, warmup_epochs, target=1.0):
        super().__init__()
        if not isinstance(warmup_epochs, int) or warmup_epochs < 1:
            raise ValueError(f"Expected warmup_epochs >= 1. Received: warmup_epochs={warmup_epochs!r}")
        if not target >= 0:
            raise ValueError(f"Expected target >= 0. Received: target={target!r}")
        self.warmup_epochs = warmup_epochs
        self.target = float(target)

    def beta_at(self, epoch):
        """β at the start of `epoch` (counted from 0): rising linearly from 0 to `target` over `warmup_epochs`, then held."""
        return self.target * min(1.0, epoch / self.warmup_epochs)

    def on_train_begin(self, logs=None):
        check_warmup_applies(getattr(self.model, "objective", None))

    def on_epoch_begin(self, epoch, logs=None):
        self.model.beta.assign(self.beta_at(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["beta"] = float(self.model.beta.numpy())


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training when the loss becomes non-finite or explodes, and keeps a message saying what to change.

    Like `keras.callbacks.TerminateOnNaN`, but it also catches a loss that stays
    finite while growing `EXPLOSION_FACTOR` times past its value at the start (a
    learning rate far too large), and keeps the reason in `message` so the
    training API can raise it instead of returning, checkpointing or exporting a
    broken model. The start is the model's loss on `reference_batch` (a training
    batch, with its labels where the model takes them) before training, or else
    the first loss `fit` reports (with several steps per execution, a
    loss that explodes within the first execution is only caught against the former).
    """

    # A VAE's loss falls as it trains; growing 100-fold past its starting value is divergence.
    EXPLOSION_FACTOR = 100.0

    def __init__(self, learned_scale=False, reference_batch=None):
        super().__init__()
        self.learned_scale = learned_scale
        self.reference_batch = reference_batch
        self.message = None
        self.reference = None

    def on_train_begin(self, logs=None):
        if self.reference_batch is not None:
            terms = self.model.compute_terms(self.reference_batch, self.model._seed(0))
            self.reference = float(np.mean(terms["loss"]))

    def _advice(self):
        advice = "Lower the learning rate (e.g. --learning-rate 1e-4) or check the data for NaN or infinite values"
        if self.learned_scale:
            advice += ", or use a fixed Gaussian scale (e.g. --gaussian-scale 0.1) instead of a learned one"
        return advice + "."

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(np.mean(loss))  # a scalar, or one value per worker under MultiWorkerMirroredStrategy
        if self.reference is None and math.isfinite(loss):
            self.reference = loss
        limit = None if self.reference is None else self.EXPLOSION_FACTOR * max(abs(self.reference), 1.0)
        if not math.isfinite(loss):
            self.message = f"The loss became {loss} at batch {batch}. {self._advice()}"
        elif loss > limit:
            self.message = (
                f"The loss exploded to {loss:.4g} at batch {batch}, from {self.reference:.4g} at the start: "
                f"training diverged. {self._advice()}"
            )
        if self.message:
            self.model.stop_training = True


class TensorBoardImages(keras.callbacks.Callback):
    """After each epoch, writes to TensorBoard a grid of prior samples (fixed seed), `images` beside their
    reconstructions, the per-dimension KL of `images` as a histogram and the active units as a scalar.

    `images` (and their `labels`, used by models of labels) are a few held-out examples;
    the summaries go to `log_dir`/images, beside Keras's own scalars.
    """

    def __init__(self, log_dir, images, labels=None, seed=0, num_samples=64):
        super().__init__()
        self.log_dir = str(pathlib.Path(log_dir) / "images")
        self.images = np.asarray(images, np.float32)
        self.labels = None if labels is None else np.asarray(labels)
        self.seed = seed
        self.num_samples = num_samples
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        from tfvae import evaluation
        from tfvae.images import reconstruction_grid, sample_grid

        vae = self.model.image_model()
        samples = sample_grid(vae, self.num_samples, self.seed)
        labels = None if self.labels is None else self.labels[:32]
        reconstructions = reconstruction_grid(vae, self.images[:32], labels)
        statistics = evaluation.latent_statistics(vae, self.images, self.labels)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=epoch):
            tf.summary.image("samples", samples[None], description="Images from the prior, the same seed every epoch")
            tf.summary.image("reconstructions", reconstructions[None], description="Held-out images beside reconstructions")
            tf.summary.histogram("kl_per_dimension", statistics["kl"], description="Held-out KL of each latent dimension (nats)")
            active = int(np.sum(statistics["activity"] > evaluation.ACTIVE_UNIT_THRESHOLD))
            tf.summary.scalar("active_units", active)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
