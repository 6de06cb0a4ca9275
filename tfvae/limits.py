"""Bounds on sizes a user asks for, and the one check of whole-number arguments (pure Python, so the
command line can use them without importing TensorFlow)."""

# A typo such as --latent-dim 2147483648 would otherwise ask for terabytes before any message.
MAX_LATENT_DIM = 65536
# Units of one dense layer the command line builds, for the same reason.
MAX_HIDDEN_UNITS = 65536
# Classes of a conditional or semi-supervised model (M2 evaluates its bound once per class).
MAX_CLASSES = 1000
# Images in one PNG grid from the command line.
MAX_GRID_IMAGES = 10000
# Elements TensorFlow indexes with int32 in one tensor.
MAX_TENSOR_ELEMENTS = 2**31 - 1


def check_count(name, value, minimum=1, maximum=None):
    """Returns `value` if it is an int in [minimum, maximum]; otherwise raises ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Expected {name} to be an integer >= {minimum}. Received: {name}={value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"Expected {name} <= {maximum}. Received: {name}={value!r}")
    return value
