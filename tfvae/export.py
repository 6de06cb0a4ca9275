"""SavedModel export for TF Serving: versioned folders, dense-tensor signatures, atomic writes.

Signatures (all return dicts of float32 tensors, batch dimension None):
  serving_default, reconstruct: images -> reconstruction
  encode: images -> loc, scale
  decode: z -> mean (and logits for a Bernoulli likelihood)
  sample: count, seed -> images (the same seed gives the same images)
  elbo:   images -> elbo, reconstruction, kl (nats; noise from a fixed seed, so answers repeat)
  complete: images, observed (1 where known), seed -> completion (importance sampling, 1000 samples)
Models of labels add `labels` (int32, one per example) to every input but
`sample`, which takes labels, seed -> one image per label; semi-supervised
models add classify: images -> probabilities (q(y|x), one column per class);
M1+M2 (`StackedSemiSupervisedVAE`) serves its M1's signatures and classify.
"""

import json
import logging
import os
import pathlib
import re
import shutil

import keras
import tensorflow as tf

from tfvae import completion, run_directory, validation
from tfvae._version import __version__
from tfvae.distributions import marginals, point
from tfvae.likelihoods import BernoulliLikelihood

logger = logging.getLogger("tfvae")

TEMPORARY_VERSION = re.compile(r"\.tmp-(\d+)-(\d+)")  # .tmp-<version>-<pid of the writer>

# The seed of the one-sample ELBO served by the `elbo` signature.
SERVING_ELBO_SEED = (0, 0)
# Importance samples per image behind the `complete` signature.
SERVING_COMPLETION_SAMPLES = 1000
# Images one `sample` request may ask for.
SERVING_MAX_COUNT = 10000
EXTRA_DIR = "assets.extra"  # TF Serving's folder for files that travel with a SavedModel


def serving_functions(model):
    """{signature name: (function, input specs)} for `model`: the single definition of what is served.

    Models of labels take `labels` (int32, one per example) wherever their
    networks need them; their `sample` draws one image per label.
    Semi-supervised models add `classify`; M1+M2 serves its M1's image signatures beside it.
    """
    vae = model.image_model()
    image_spec = tf.TensorSpec((None, *vae.image_shape), tf.float32, name="images")
    latent_spec = tf.TensorSpec((None, vae.latent_dim), tf.float32, name="z")
    label_specs = [tf.TensorSpec((None,), tf.int32, name="labels")] * bool(vae.num_classes)

    def reconstruct(images, *labels):
        return {"reconstruction": vae._reconstruction(images, *labels)}

    def encode(images, *labels):
        posterior = vae._posterior(images, *labels)
        return {"loc": point(posterior), "scale": marginals(posterior).stddev()}

    def decode(z, *labels):
        likelihood = vae._decoder_for(*labels)(z)
        outputs = {"mean": likelihood.mean()}
        if bernoulli:
            outputs["logits"] = likelihood.distribution.logits
        return outputs

    def elbo(images, *labels):
        terms = vae.objective_terms(images, tf.constant(SERVING_ELBO_SEED, tf.int32), *labels)
        return {key: terms[key] for key in ("elbo", "reconstruction", "kl")}

    def sample(count_or_labels, seed):
        labels = count_or_labels if vae.num_classes else None
        count = tf.size(labels) if vae.num_classes else count_or_labels
        return {"images": vae.sample(count, seed=seed, labels=labels)}

    bernoulli = isinstance(vae.decoder.likelihood, BernoulliLikelihood)
    scalar = lambda name: tf.TensorSpec((), tf.int32, name=name)
    functions = {
        "serving_default": (reconstruct, [image_spec, *label_specs]),
        "reconstruct": (reconstruct, [image_spec, *label_specs]),
        "encode": (encode, [image_spec, *label_specs]),
        "decode": (decode, [latent_spec, *label_specs]),
        "sample": (sample, [*(label_specs or [scalar("count")]), scalar("seed")]),
        "elbo": (elbo, [image_spec, *label_specs]),
    }
    completion_chunk = vae._chunk_size(SERVING_COMPLETION_SAMPLES, 100)

    def complete(images, observed, seed, *labels):
        mean, _ = completion.importance(
            images, observed, lambda x: vae._posterior(x, *labels), vae._decoder_for(*labels), vae.prior_distribution(*labels),
            tf.stack([seed, 0]), SERVING_COMPLETION_SAMPLES, completion_chunk, marks_missing=vae.missing_data,
        )
        return {"completion": mean}

    observed_spec = tf.TensorSpec((None, *vae.image_shape), tf.float32, name="observed")
    functions["complete"] = (complete, [image_spec, observed_spec, scalar("seed"), *label_specs])
    if hasattr(model, "classify"):
        functions["classify"] = (lambda images: {"probabilities": model._class_posterior(images).probs_parameter()},
                                 [image_spec])
    return {name: (_checking_inputs(vae, fn, specs), specs) for name, (fn, specs) in functions.items()}


def _checking_inputs(vae, fn, specs):
    """`fn` behind in-graph checks of its inputs, so that a client sending bad values gets an error that names the
    input (TF Serving answers INVALID_ARGUMENT with the message) instead of a number."""
    names = [spec.name for spec in specs]

    def checked(*args):
        inputs = dict(zip(names, args))
        with tf.control_dependencies([check for name in inputs for check in _input_checks(vae, name, inputs)]):
            return fn(*(tf.identity(value) for value in args))

    return checked


def _shape_check(value, shape, name):
    """The check that `value` is a batch of `shape` (batch, *shape), whatever its rank."""
    expected = ",".join(map(str, shape))
    received = tf.strings.reduce_join(tf.strings.as_string(tf.shape(value)[1:]), separator=",")
    return validation._assert(tf.equal(received, expected), f"expected {name} of shape (batch, {expected.replace(',', ', ')}). "
                              "Received: shape (", tf.strings.reduce_join(tf.strings.as_string(tf.shape(value)),
                                                                           separator=", "), ")")


def _input_checks(vae, name, inputs):
    """The in-graph checks of the serving input `name` (`inputs` holds every input of the call)."""
    value = inputs[name]
    if name in ("images", "observed"):
        checks = [_shape_check(value, vae.image_shape, name)]
        if name == "observed":
            binary = tf.reduce_all(tf.equal(value, 0.0) | tf.equal(value, 1.0))
            return [*checks, validation._assert(binary, "expected observed to hold 1 where a pixel is known, 0 elsewhere")]
        if "observed" in inputs:  # only the observed pixels are read; the others may hold anything
            value = tf.where(inputs["observed"] > 0, value, tf.cast(vae.data_support[0], value.dtype))
            return checks + validation.image_checks(value, vae.data_support, name="images in their observed pixels",
                                                    advice="a pixel without a value is missing: observed 0")
        return checks + validation.image_checks(value, vae.data_support, vae.missing_data)
    if name == "labels":
        return validation.label_checks(value, vae.num_classes)
    if name == "z":
        return [_shape_check(value, (vae.latent_dim,), "z"),
                validation._assert(tf.reduce_all(tf.math.is_finite(value)), "expected finite z")]
    if name == "count":
        return [validation._assert((value >= 0) & (value <= SERVING_MAX_COUNT),
                                   f"expected count in [0, {SERVING_MAX_COUNT}]. Received: ", value)]
    return []


def next_version(model_dir):
    """1 + the highest numeric version folder in `model_dir` (1 when there is none)."""
    model_dir = pathlib.Path(model_dir)
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _remove_stale_temporaries(export_dir):
    """Deletes half-written versions left by exports whose process has died."""
    for path in export_dir.glob(".tmp-*"):
        match = TEMPORARY_VERSION.fullmatch(path.name)
        if match and not run_directory.process_alive(int(match.group(2))):
            shutil.rmtree(path, ignore_errors=True)


def export_saved_model(vae, export_dir, version=None, run_config=None, dataset=None, option="export_dir"):
    """Writes `vae` as `<export_dir>/<version>/`, a SavedModel that TF Serving loads as it is.

    The version is the next free number unless given; an existing version is
    never overwritten. The SavedModel is built in a temporary folder beside the
    target and renamed into place when complete, so a server watching
    `export_dir` never sees a half-written version; concurrent exports to one
    `export_dir` take turns (a file lock) and get distinct versions. Returns the version's path. Errors name
    the folder as `option` (the command line passes its "--export-dir").
    """
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise ValueError(f"Expected a version >= 1. Received: version={version!r}")
    run_directory.check_outside_checkpoints(export_dir, option)
    export_dir = run_directory.check_writable(export_dir, option)
    with run_directory.locked(export_dir, option, wait=True):
        _remove_stale_temporaries(export_dir)
        version = next_version(export_dir) if version is None else version
        target = export_dir / str(version)
        if target.exists():
            raise FileExistsError(
                f"{target} already exists; versions are never overwritten. Pass another version, "
                "or leave it out to take the next one."
            )
        tmp = export_dir / f".tmp-{version}-{os.getpid()}"
        logger.info("Exporting the SavedModel to %s.", target)
        try:
            with run_directory.writing(f"the SavedModel {target}"):
                _write_saved_model(vae, tmp, run_config, dataset)
                os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_saved_model(model, path, run_config, dataset):
    # The endpoints capture the variables they use; `track` is left out because its walk for lookup tables
    # traces Keras's default signature of every sub-model, which models of labels cannot answer without labels.
    archive = keras.export.ExportArchive()
    signatures = serving_functions(model)
    for name, (fn, specs) in signatures.items():
        archive.add_endpoint(name, tf.function(fn), input_signature=specs)
    archive.write_out(str(path), verbose=False)
    extra = path / EXTRA_DIR
    extra.mkdir()
    vae = model.image_model()
    record = {
        "tfvae_version": __version__,
        "image_shape": list(vae.image_shape),
        "latent_dim": vae.latent_dim,
        "likelihood": type(vae.decoder.likelihood).__name__,
        "prior": type(vae.prior).__name__,
        "posterior": type(vae.encode(tf.zeros((1, *vae.image_shape)), vae.labels_used(tf.zeros([1], tf.int32)))).__name__,
        "objective": vae.objective,
        "gradient_estimator": vae.gradient_estimator,
        "num_samples": vae.num_samples,
        "model": type(model).__name__,
        "num_classes": getattr(model, "num_classes", 0),
        "dataset": dataset,
        "signatures": sorted(signatures),
    }
    (extra / "tfvae.json").write_text(json.dumps(record, indent=2))
    if run_config is not None:
        (extra / "run_config.json").write_text(json.dumps(run_config, indent=2, sort_keys=True))
