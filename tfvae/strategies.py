"""TensorFlow distribution strategies by name, and whether XLA can run under each."""

import logging

import tensorflow as tf

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
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


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
    resolver = getattr(strategy, "cluster_resolver", None)
    return f"{resolver.task_type}-{resolver.task_id}" if resolver is not None and resolver.task_type else "local"


def xla_supported(strategy):
    """XLA under several replicas is left to accelerators: over CPU devices it fails to compile."""
    if strategy.num_replicas_in_sync == 1 or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    devices = getattr(strategy.extended, "worker_devices", ())
    return bool(devices) and all(tf.DeviceSpec.from_string(d).device_type == "GPU" for d in devices)


def resolve_steps_per_execution(requested, strategy):
    """`requested`, unless several replicas run: Keras 3.15 with TF 2.21 cannot run more than one
    step per execution under a multi-replica strategy (a placeholder left unfed in its loop)."""
    if requested > 1 and strategy.num_replicas_in_sync > 1:
        logger.warning(
            "steps_per_execution is 1, not %d: Keras cannot run several steps per execution under %s "
            "with %d replicas.",
            requested,
            type(strategy).__name__,
            strategy.num_replicas_in_sync,
        )
        return 1
    return requested


def resolve_jit_compile(requested, strategy):
    """`requested`, unless the strategy cannot run XLA; then False, said once in the log."""
    if requested and not xla_supported(strategy):
        logger.warning(
            "XLA is off: jit_compile under %s with %d replicas on CPU devices fails to compile, "
            "so training runs as a TensorFlow graph without XLA.",
            type(strategy).__name__,
            strategy.num_replicas_in_sync,
        )
        return False
    return requested
