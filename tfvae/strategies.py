"""TensorFlow distribution strategies by name, and the one rule that decides where XLA runs."""

import logging

import keras
import tensorflow as tf

from tfvae.errors import RunError

logger = logging.getLogger("tfvae")


def _auto():
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def _mirrored():
    """All local GPUs; without GPUs, every logical CPU device (one, unless configured otherwise)."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _one_device():
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def _tpu():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    except (ValueError, RuntimeError) as error:
        raise RunError(
            f"No TPU found ({' '.join(str(error).split())}). --strategy tpu runs on a Cloud TPU VM, or with TPU_NAME "
            "naming a TPU; here use --strategy auto."
        ) from None
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


# The builder of each strategy `tfvae.names.STRATEGIES` names.
STRATEGIES = {
    "auto": _auto,
    "one-device": _one_device,
    "mirrored": _mirrored,
    "multi-worker": lambda: tf.distribute.MultiWorkerMirroredStrategy(),
    "tpu": _tpu,
}


def make_strategy(name):
    """The `tf.distribute` strategy registered as `name` (see `STRATEGIES`)."""
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}. Expected one of {sorted(STRATEGIES)}.")
    return STRATEGIES[name]()


def is_multi_worker(strategy):
    """Whether `strategy` spans several machines, where only the chief writes a run's outputs."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """True on the worker that writes outputs: the chief, or worker 0 of a cluster without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


def worker_name(strategy):
    """This process's task in the cluster, e.g. "worker-1" ("local" outside one): names the folder of its logs and backups."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return f"{resolver.task_type}-{resolver.task_id}" if resolver is not None and resolver.task_type else "local"


def xla_supported(strategy):
    """XLA under several replicas is left to accelerators: over CPU devices it fails to compile."""
    if strategy.num_replicas_in_sync == 1 or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    devices = getattr(strategy.extended, "worker_devices", ())
    return bool(devices) and all(tf.DeviceSpec.from_string(d).device_type == "GPU" for d in devices)


def strategy_name(strategy):
    """The name users know a strategy by (MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


def resolve_steps_per_execution(requested, strategy):
    """`requested`, unless several replicas run: Keras 3.15 with TF 2.21 cannot run more than one
    step per execution under a multi-replica strategy (a placeholder left unfed in its loop)."""
    if requested > 1 and strategy.num_replicas_in_sync > 1:
        logger.warning(
            "steps_per_execution is 1, not %d: Keras cannot run several steps per execution under %s "
            "with %d replicas.",
            requested,
            strategy_name(strategy),
            strategy.num_replicas_in_sync,
        )
        return 1
    return requested


CONVOLUTIONS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)


def has_convolutions(model):
    """Whether `model` holds a convolution layer: XLA is off for those on CPU, where oneDNN's convolutions are faster."""
    return any(isinstance(layer, CONVOLUTIONS) for layer in model._flatten_layers())


def _on_accelerator(strategy):
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if strategy.num_replicas_in_sync > 1:
        devices = strategy.extended.worker_devices
        return all(tf.DeviceSpec.from_string(d).device_type in ("GPU", "TPU") for d in devices)
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def choose_jit_compile(model, strategy=None, requested="auto"):
    """(whether to compile `model`'s steps with XLA, why): the single rule for the library and the CLI.

    An explicit True or False wins. "auto": on GPUs and TPUs; on CPU for dense
    models (measured faster: benchmarks/RESULTS.md) but not for convolutions
    (XLA's CPU convolutions lose to oneDNN); never where it cannot compile
    (several replicas over CPU devices).
    """
    strategy = strategy or tf.distribute.get_strategy()
    if requested is True or requested is False:
        if requested and not xla_supported(strategy):
            logger.warning("jit_compile=True under %s over CPU devices is likely to fail to compile.", strategy_name(strategy))
        return requested, "as requested"
    if requested != "auto":
        raise ValueError(f"Expected jit_compile to be True, False or 'auto'. Received: jit_compile={requested!r}")
    if not xla_supported(strategy):
        return False, f"{strategy_name(strategy)} with {strategy.num_replicas_in_sync} replicas on CPU devices cannot compile with XLA"
    if _on_accelerator(strategy):
        return True, "GPUs and TPUs run the step fastest under XLA"
    if has_convolutions(model):
        return False, "convolutions on CPU run faster without XLA (pass jit_compile=True to force it)"
    return True, "a dense model on CPU runs faster under XLA"
