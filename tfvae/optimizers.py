"""Adam that ends on the average of its recent weights, even after a short fit.

Keras's `use_ema` starts the average at the initial weights with its full momentum, so a fit shorter than
the average's horizon (~1/(1 − momentum) steps) ends close to where it began. Here the momentum warms up
as min(momentum, (1 + t) / (10 + t)) over steps t, as `tf.train.ExponentialMovingAverage` does with
`num_updates`: early steps are averaged over the steps so far, later ones over the horizon.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfvae")
class AveragingAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam(use_ema=True, ema_momentum=momentum)` with the momentum warmed up over the first steps;
    `fit` ends by putting the average in the model (Keras's `finalize_variable_values`)."""

    def __init__(self, learning_rate=1e-3, ema_momentum=0.999, **kwargs):
        kwargs.pop("use_ema", None)  # always on (a saved config carries it)
        super().__init__(learning_rate=learning_rate, use_ema=True, ema_momentum=ema_momentum, **kwargs)

    def _update_model_variables_moving_average(self, trainable_variables):
        steps = ops.cast(self.iterations, "float32")
        warm = ops.minimum(self.ema_momentum, (1.0 + steps) / (10.0 + steps))
        for variable, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                momentum = ops.cast(warm, variable.dtype)
                average.assign(momentum * average + (1 - momentum) * variable)
