"""Numeric precision of training by name: float32, or Keras's mixed policies (bfloat16 or float16 compute).

Under a mixed policy the network bodies compute in the low precision while
variables, distribution heads, losses and every exported output stay float32;
"mixed_float16" also scales the loss (Keras wraps the optimizer in a
`LossScaleOptimizer`).
"""

import contextlib

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(name):
    """`name` if it is one of `PRECISIONS`, else a ValueError naming them."""
    if name not in PRECISIONS:
        raise ValueError(f"Unknown precision {name!r}. Expected one of {', '.join(PRECISIONS)}.")
    return name


@contextlib.contextmanager
def precision(name):
    """Models built inside this block use the policy `name`; the previous global policy returns after it."""
    import keras  # here, so the command line can list PRECISIONS without importing TensorFlow

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(check_precision(name))
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
