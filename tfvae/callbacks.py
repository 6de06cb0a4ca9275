"""Training callbacks: KL warm-up and a guard that stops a diverging run with a clear message."""

import math

import keras


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
        return self.target * min(1.0, epoch / self.warmup_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.beta.assign(self.beta_at(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["beta"] = float(self.model.beta.numpy())


class TrainingDiverged(RuntimeError):
    """Raised by `tfvae.training.train` when the loss became NaN or infinite."""


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and keeps a message saying what to change.

    Like `keras.callbacks.TerminateOnNaN`, but the reason is kept in `message`
    so the training API can raise it instead of returning a broken model.
    """

    def __init__(self):
        super().__init__()
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.message = (
                f"The loss became {float(loss)} at batch {batch}. Lower the learning rate "
                "(e.g. --learning-rate 1e-4), check the data for NaN or infinite values, "
                "or use a fixed Gaussian scale instead of a learned one."
            )
            self.model.stop_training = True
