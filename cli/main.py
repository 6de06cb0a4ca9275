"""`tfvae` commands. Each parses its options and calls one library function; TensorFlow is
imported inside the commands only, so `tfvae --help` answers at once."""

import functools
import json
import logging
import math
import os
import sys

import click
from click.core import ParameterSource

from tfvae import registry
from tfvae._version import __version__
from tfvae.config import data_source_for, default
from tfvae.limits import MAX_GRID_IMAGES, MAX_HIDDEN_UNITS, MAX_LATENT_DIM
from tfvae.names import (
    BINARIZATIONS,
    BOUND_WEIGHTINGS,
    COMPLETION_METHODS,
    GRADIENT_ESTIMATORS,
    KL_ESTIMATORS,
    LATENT_TYPES,
    MASKS,
    OBJECTIVES,
    RECOGNITION_UPDATES,
    STRATEGIES,
)
from tfvae.precision import PRECISIONS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EPILOG = """\b
Examples:
  tfvae train --dataset fashion_mnist --epochs 10
  tfvae train --dataset mnist --data-dir ../shared/data/mnist \\
      --train-split 'test[:8000]' --eval-split 'test[8000:]'
  tfvae evaluate runs/latest --json
  tfvae sample runs/latest -n 64 --out grid.png
  tfvae export runs/latest --export-dir saved_models/fashion_mnist
"""

CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"]}


def user_errors(command):
    """Shows the library's errors about user input as one clear line and a non-zero exit, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from tfvae.errors import TfvaeError, TrainingInterrupted

        try:
            return command(*args, **kwargs)
        except TrainingInterrupted as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(130)
        except KeyboardInterrupt:
            click.echo("Error: Interrupted. Files are written aside and renamed into place, so none is half-written.",
                       err=True)
            sys.exit(130)
        except (TfvaeError, ValueError, FileExistsError) as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def picture_out(picture, default):
    """--out (a .png, `default`) and --overwrite for a command that writes the tfvae `picture`; the path is checked
    before any work (`tfvae.run_directory.check_picture_path`)."""

    def decorate(command):
        @functools.wraps(command)
        def checked(*args, out, overwrite, **kwargs):
            from tfvae.run_directory import check_picture_path

            return command(*args, out=check_picture_path(out, picture, overwrite=overwrite), **kwargs)

        checked = click.option("--overwrite", is_flag=True, help="Replace --out even if it is not an earlier such picture.")(checked)
        return click.option("--out", type=click.Path(dir_okay=False), default=default, help="A .png file.")(checked)

    return decorate


def data_options(command, from_run=False):
    """--dataset, --data-dir and --no-download, shared by every command that reads data. For a command reading a
    MODEL (`from_run`), the first two default to its run's own (`tfvae.config.data_source_for`)."""
    command = click.option("--no-download", is_flag=True, help="Never download: use local data only.")(command)
    command = click.option(
        "--data-dir",
        type=click.Path(),
        default=None if from_run else default("data_dir"),
        help="A folder of IDX files, a .npz file, or a TFDS data directory." + (" [default: the run's]" if from_run else ""),
    )(command)
    return click.option(
        "--dataset",
        default=None if from_run else default("dataset"),
        help="A TFDS image dataset name (see `tfvae datasets`)."
        + (f" [default: the run's; {default('dataset')} for a .keras file]" if from_run else ""),
    )(command)


def model_data_options(command):
    """`data_options` for commands reading a MODEL: its run's dataset unless told otherwise."""
    return data_options(command, from_run=True)


class _EchoHandler(logging.Handler):
    """Shows tfvae's log lines (warnings, progress notes) on stderr through click, one line each."""

    def emit(self, record):
        click.echo(f"tfvae: {self.format(record)}", err=True)


def _show_library_log():
    """Echoes tfvae's log lines through click for this command; the logger is as it was when the command ends."""
    logger = logging.getLogger("tfvae")
    handler, level, propagate = _EchoHandler(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def restore():
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate

    click.get_current_context().call_on_close(restore)


@click.group(context_settings=CONTEXT, epilog=EPILOG)
@click.version_option(__version__, prog_name="tfvae")
def main():
    """Variational Autoencoders on Keras 3 and TensorFlow Probability: train, evaluate, sample, export."""
    _show_library_log()


# Settings some model kinds default differently (shown in --help), and those kinds' defaults.
KIND_DEFAULTS = sorted({name for entry in registry.MODELS.values() for name in entry.run_defaults})


def _default_text(name):
    """The --help default of a setting some model kinds default differently: "20; semi-supervised: 50"."""
    shown = lambda value: "none" if value is None else str(value)
    kinds = [f"{kind}: {shown(entry.run_defaults[name])}" for kind, entry in registry.MODELS.items()
             if name in entry.run_defaults]
    return "; ".join([shown(default(name)), *kinds])


class Units(click.ParamType):
    """Comma-separated whole numbers from 1 to `maximum` (units of layers), e.g. 100,50."""

    name = "N,N,..."

    def __init__(self, maximum, example):
        self.maximum, self.example = maximum, example

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            units = tuple(int(part) for part in str(value).split(","))
        except ValueError:
            units = ()
        if not units or min(units) < 1 or max(units) > self.maximum:
            self.fail(f"expected comma-separated whole numbers from 1 to {self.maximum}, e.g. {self.example}; "
                      f"got {value!r}", param, ctx)
        return units


def _parts_help(kind):
    """`name: what it is` for each registered part of `kind`, for an option's help."""
    return "; ".join(f"{name}: {entry.summary}" for name, entry in registry.KINDS[kind].items()) + "."


def _choice(kind):
    return click.Choice(list(registry.KINDS[kind]))


@main.command(context_settings=CONTEXT)
@data_options
@click.option("--model", type=_choice("model"), default=default("model"), help=_parts_help("model"))
@click.option("--prior", type=_choice("prior"), default=default("prior"), show_default=_default_text("prior"),
              help=_parts_help("prior"))
@click.option("--posterior", type=_choice("posterior"), default=default("posterior"), help=_parts_help("posterior"))
@click.option("--labeled-examples", type=click.IntRange(min=1), default=default("labeled_examples"),
              help="Semi-supervised: labels kept from the training split (class-balanced, chosen by --seed) [default: all].")
@click.option("--alpha", type=click.FloatRange(min=0), default=default("alpha"),
              help="Semi-supervised: weight of the classification loss.")
@click.option("--bound-weighting", type=click.Choice(BOUND_WEIGHTINGS), default=default("bound_weighting"),
              help="Semi-supervised: labeled bounds count once each (data) or each time a batch shows them (batch).")
@click.option("--missing", metavar="random:P", default=default("missing"),
              help="Train on incomplete data: hide each training pixel with probability P (NaN pixels in an .npz count too).")
@click.option("--train-split", default=default("train_split"), help="TFDS split syntax, e.g. 'train[:90%]'.")
@click.option("--eval-split", default=default("eval_split"), help="Held-out split for validation and final metrics.")
@click.option("--binarize", type=click.Choice([name or "none" for name in BINARIZATIONS]), default=default("binarize"),
              show_default=_default_text("binarize"),
              help="Pixel binarization of the training data (evaluation uses a fixed seed).")
@click.option("--architecture", type=_choice("architecture"), default=default("architecture"),
              help=_parts_help("architecture"))
@click.option("--latent-dim", type=click.IntRange(1, MAX_LATENT_DIM), default=default("latent_dim"),
              show_default=_default_text("latent_dim"))
@click.option("--latent-dims", type=Units(MAX_LATENT_DIM, "100,50"),
              default=",".join(map(str, default("latent_dims"))),
              help="Hierarchical: units of each stochastic layer, bottom up, e.g. 100,50.")
@click.option("--hidden-units", type=Units(MAX_HIDDEN_UNITS, "1024,1024"), default=None,
              help="The MLP's dense layers, e.g. 1024,1024 (for --model semi-supervised, M1's). [default: 400]")
@click.option("--latent-type", type=click.Choice(LATENT_TYPES), default=default("latent_type"),
              help="Hierarchical: Gaussian layers, or binary ones (a sigmoid belief network).")
@click.option("--likelihood", type=_choice("likelihood"), default=default("likelihood"), help=_parts_help("likelihood"))
@click.option("--gaussian-scale", default=str(default("gaussian_scale")), help="σ of a Gaussian likelihood, or 'learned'.")
@click.option("--kl", type=click.Choice(KL_ESTIMATORS), default=default("kl"),
              help="KL(q || p): closed form where the prior and posterior have one, else Monte Carlo (auto); or always one way.")
@click.option("--num-samples", type=click.IntRange(min=1), default=default("num_samples"),
              help="Latent samples per example (L, or K for iwae).")
@click.option("--objective", type=click.Choice(list(OBJECTIVES)), default=default("objective"),
              help="The bound to maximize (elbo, iwae), or the wake-sleep family's updates.")
@click.option("--gradient-estimator", type=click.Choice(GRADIENT_ESTIMATORS), default=default("gradient_estimator"),
              show_default="the objective's own: reparameterization where q allows it, else score_function (vimco for iwae)",
              help="How the bound's gradient is estimated (none for the wake-sleep family).")
@click.option("--recognition-update", type=click.Choice(RECOGNITION_UPDATES), default=default("recognition_update"),
              help="Reweighted wake-sleep: the recognition network's update.")
@click.option("--epochs", type=click.IntRange(min=1), default=default("epochs"), show_default=_default_text("epochs"))
@click.option("--m1-epochs", type=click.IntRange(min=1), default=default("m1_epochs"),
              help="Semi-supervised (M1+M2): epochs of M1, the VAE trained first on every image.")
@click.option("--batch-size", type=click.IntRange(min=1), default=default("batch_size"), show_default=_default_text("batch_size"),
              help="The global batch size.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=default("learning_rate"),
              help="Adam's step size (semi-supervised and m2: M2 ends on the average of its last ~1000 steps' weights).")
@click.option("--beta", type=click.FloatRange(min=0), default=default("beta"), help="Weight of the KL term.")
@click.option("--prior-draw-weight", type=click.FloatRange(0, 1, max_open=True), default=default("prior_draw_weight"),
              show_default=_default_text("prior_draw_weight"),
              help="Sohn et al.'s hybrid objective: weight of decoding codes drawn from the prior (0: the bound alone).")
@click.option("--class-consistency-weight", type=click.FloatRange(min=0), default=default("class_consistency_weight"),
              show_default=_default_text("class_consistency_weight"),
              help="Conditional: weight of an auxiliary classifier's judgement of the images the model makes of each "
                   "class (0: no classifier; none with --missing).")
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=default("warmup_epochs"),
              show_default=_default_text("warmup_epochs"),
              help="KL warm-up: anneal β from 0 over this many epochs (the elbo and iwae objectives). The hierarchical "
                   "kind's default keeps 80% of --epochs (none for wake-sleep).")
@click.option("--seed", type=int, default=default("seed"))
@click.option("--jit/--no-jit", default=None, help="Compile the training step with XLA [default: chosen per platform and model].")
@click.option("--precision", type=click.Choice(PRECISIONS), default=default("precision"),
              help="Mixed precision computes the networks in 16 bits.")
@click.option("--steps-per-execution", type=click.IntRange(min=1), default=default("steps_per_execution"),
              help="Training steps per call into the compiled function.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=default("strategy"))
@click.option("--log-likelihood-samples", type=click.IntRange(min=0), default=default("log_likelihood_samples"),
              help="K for the final importance-sampled log p(x); 0 skips it.")
@click.option("--output-dir", type=click.Path(file_okay=False), default=default("output_dir"))
@click.option("--export-dir", type=click.Path(file_okay=False), default=default("export_dir"),
              help="SavedModel folder [default: saved_models/DATASET].")
@click.option("--no-export", is_flag=True, help="Skip the SavedModel export.")
@click.option("--resume", is_flag=True, help="Continue the run in --output-dir from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="One line per epoch instead of a progress bar.")
@user_errors
def train(no_download, gaussian_scale, binarize, no_export, resume, quiet, export_dir, jit, **options):
    """Train a model and write checkpoints, logs, images, metrics and a SavedModel."""
    from tfvae.config import RunConfig, check_applies
    from tfvae.training import train as run

    settings = {
        **options,
        "download": not no_download,
        "binarize": None if binarize == "none" else binarize,
        "gaussian_scale": gaussian_scale if gaussian_scale == "learned" else _positive_float(gaussian_scale),
        "jit_compile": "auto" if jit is None else jit,
        "export_dir": "" if no_export else export_dir,
    }
    # Options left at their defaults take the model kind's own (tfvae.registry.MODELS) where it has one.
    context = click.get_current_context()
    explicit = {name for name in settings if context.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)}
    check_applies(settings["model"], explicit)
    config = RunConfig.for_model(**{name: value for name, value in settings.items()
                                    if name not in KIND_DEFAULTS or name in explicit})
    # A progress bar in a terminal; one line per epoch in a log file or pipe, or with --quiet.
    result = run(config, resume=resume, verbose=1 if sys.stdout.isatty() and not quiet else 2)
    click.echo(_format_metrics(result.metrics))
    click.echo(f"Outputs in {config.output.output_dir}" + (f"; SavedModel in {result.export_path}" if result.export_path else ""))


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise click.BadParameter(f"expected a finite number > 0 or 'learned', got {text!r}", param_hint="--gaussian-scale")
    return value


def _mask_name(name):
    """--mask, checked before the model loads."""
    from tfvae import masks

    try:
        masks.parse(name)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--mask") from None
    return name


def _format_metrics(metrics):
    order = ("elbo", "reconstruction", "kl", "log_likelihood", "accuracy", "active_units")
    return "  ".join(f"{key}={metrics[key]:.2f}" if isinstance(metrics[key], float) else f"{key}={metrics[key]}" for key in order if key in metrics)


def _held_out(vae, dataset, split, data_dir, no_download, limit=None):
    """(images, labels) of a held-out split; labels (None otherwise) when `vae` takes labels."""
    from tfvae.data import load_dataset
    from tfvae.evaluation import collect

    data = load_dataset(dataset, split=split, data_dir=data_dir, download=not no_download, binarize="static", shuffle=False,
                        batch_size=500, with_labels=bool(vae.num_classes))
    return collect(data, limit)


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True))
@model_data_options
@click.option("--split", default="test")
@click.option("--log-likelihood-samples", type=click.IntRange(min=0), default=1000, help="K for the importance-sampled log p(x); 0 skips it.")
@click.option("--seed", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@user_errors
def evaluate(model, dataset, data_dir, no_download, split, log_likelihood_samples, seed, as_json):
    """Held-out elbo, reconstruction, kl and log_likelihood (nats per example) of MODEL.

    MODEL is a run directory or a .keras checkpoint.
    """
    from tfvae.checkpoints import load_model
    from tfvae.evaluation import evaluate as run

    vae = load_model(model)
    dataset, data_dir = data_source_for(model, dataset, data_dir)
    images, labels = _held_out(vae, dataset, split, data_dir, no_download)
    metrics = run(vae, images, log_likelihood_samples, seed, labels=labels)
    click.echo(json.dumps(metrics, indent=2) if as_json else _format_metrics(metrics))


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True))
@click.option("-n", "--num-images", type=click.IntRange(1, MAX_GRID_IMAGES), default=64)
@click.option("--seed", type=int, default=0)
@click.option("--label", type=click.IntRange(min=0),
              help="Models of labels: generate this class only [default: one row per class, -n rounded to whole rows].")
@user_errors
@picture_out("samples", "samples.png")
def sample(model, num_images, seed, label, out):
    """Save a grid of images generated from MODEL's prior."""
    from tfvae.checkpoints import load_model
    from tfvae.images import images_per_class, save_samples

    vae = load_model(model)
    if label is not None and not vae.num_classes:
        raise click.UsageError(f"--label applies to models of labels; {model} is a VAE of images alone.")
    if label is not None and label >= vae.num_classes:
        raise click.UsageError(f"--label {label} is not a class of {model}, whose classes are 0 to {vae.num_classes - 1}.")
    if label is None and vae.num_classes and num_images % vae.num_classes:
        per_class = images_per_class(vae.num_classes, num_images)
        logging.getLogger("tfvae").info("One row per class: %d images, %d of each of the %d classes.",
                                        per_class * vae.num_classes, per_class, vae.num_classes)
    click.echo(f"Wrote {save_samples(vae, out, n=num_images, seed=seed, label=label)}")


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True))
@model_data_options
@click.option("--split", default="test")
@click.option("-n", "--num-images", type=click.IntRange(1, MAX_GRID_IMAGES), default=32)
@user_errors
@picture_out("reconstructions", "reconstructions.png")
def reconstruct(model, dataset, data_dir, no_download, split, num_images, out):
    """Save held-out images beside MODEL's reconstructions."""
    from tfvae.checkpoints import load_model
    from tfvae.images import save_reconstructions

    vae = load_model(model)
    dataset, data_dir = data_source_for(model, dataset, data_dir)
    held_out, labels = _held_out(vae, dataset, split, data_dir, no_download, limit=num_images)
    click.echo(f"Wrote {save_reconstructions(vae, held_out, out, labels=labels)}")


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True))
@click.option("--export-dir", type=click.Path(file_okay=False), required=True, help="e.g. saved_models/NAME; versions go in numbered folders below it.")
@click.option("--version", "version", type=click.IntRange(min=1), help="Version number [default: the next free one].")
@user_errors
def export(model, export_dir, version):
    """Export MODEL (a run directory or .keras checkpoint) as a SavedModel for TF Serving."""
    from tfvae.checkpoints import load_model
    from tfvae.config import run_config_beside
    from tfvae.export import export_saved_model

    run_config = run_config_beside(model)
    path = export_saved_model(
        load_model(model), export_dir, version=version, run_config=run_config and run_config.to_json(),
        dataset=run_config and run_config.data.dataset, option="--export-dir",
    )
    click.echo(f"Exported {path}")


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True))
@model_data_options
@click.option("--split", default="test", help="The images to complete.")
@click.option("--train-split", help="Split whose per-pixel means are the baseline [default: the run's training split, or 'train'].")
@click.option("--mask", default="top_half", show_default=True, callback=lambda ctx, param, name: _mask_name(name),
              help=f"Observed pixels: {', '.join(MASKS)}.")
@click.option("--method", type=click.Choice(COMPLETION_METHODS), default="metropolis_within_gibbs")
@click.option("--num-samples", type=click.IntRange(1, 100000), default=1000, help="Importance samples or chain iterations.")
@click.option("-n", "--num-images", type=click.IntRange(1, 10000), default=100, help="Images completed and scored.")
@click.option("--draws", type=click.IntRange(0, 16), default=3, help="Sampled completions shown beside the mean.")
@click.option("--seed", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@user_errors
@picture_out("completions", "completions.png")
def complete(model, dataset, data_dir, no_download, split, train_split, mask, method, num_samples, num_images, draws, seed,
             out, as_json):
    """Fill in the pixels a --mask hides in held-out images; score the completions against a per-pixel-mean baseline.

    The PNG shows one row per image (16 at most): original, observed part, completion, then --draws samples.
    """
    from tfvae import masks
    from tfvae.checkpoints import load_model
    from tfvae.config import run_config_beside
    from tfvae.data import SplitError
    from tfvae.evaluation import completion_metrics
    from tfvae.images import save_completions

    vae = load_model(model)
    dataset, data_dir = data_source_for(model, dataset, data_dir)
    if train_split is None:
        run_config = run_config_beside(model)
        train_split = run_config.data.train_split if run_config else "train"
        logging.getLogger("tfvae").info(
            "The per-pixel-mean baseline comes from --train-split %r (%s).", train_split,
            "the run's training split" if run_config else "a model file carries no run settings; pass --train-split to choose",
        )
    observed = masks.make(mask, vae.image_shape, seed=seed)
    images, labels = _held_out(vae, dataset, split, data_dir, no_download, limit=num_images)
    try:
        training_images, _ = _held_out(vae, dataset, train_split, data_dir, no_download, limit=10000)
    except SplitError as error:
        raise SplitError(f"The baseline's --train-split cannot be read: {error} Pass --train-split with a split of "
                         f"{dataset!r} to take the per-pixel means from.") from None
    metrics, completed = completion_metrics(vae, images, observed, training_images.mean(axis=0), method, num_samples, seed,
                                            labels)
    shown = slice(0, 16)
    drawn = None  # sampled for the pictured images only
    if draws:
        drawn = vae.complete(images[shown], observed, method=method, num_samples=num_samples, draws=draws, seed=seed,
                             labels=vae.labels_used(labels[shown] if labels is not None else None)).numpy()
    path = save_completions(out, images[shown], observed, completed[shown], drawn)
    metrics["mask"] = mask
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        click.echo("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    click.echo(f"Wrote {path}", err=as_json)


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True))
@model_data_options
@click.option("--split", default="test", help="Held-out images to encode and interpolate.")
@click.option("-n", "--num-images", type=click.IntRange(2, 20000), default=5000, help="Images in the latent-space plot.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="explore", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace files in --out-dir even if they are not earlier such pictures.")
@user_errors
def explore(model, dataset, data_dir, no_download, split, num_images, out_dir, overwrite):
    """Pictures of a trained MODEL: latent space, manifold, interpolations, KL per dimension, training curves."""
    import pathlib

    from tfvae import plots
    from tfvae.checkpoints import load_model
    from tfvae.data import load_dataset
    from tfvae.evaluation import collect
    from tfvae.run_directory import check_picture_path, check_writable

    check_writable(out_dir, "--out-dir")
    for picture in plots.PICTURES:
        check_picture_path(pathlib.Path(out_dir) / f"{picture}.png", picture, "--out-dir", overwrite)
    vae = load_model(model)
    dataset, data_dir = data_source_for(model, dataset, data_dir)
    options = {"split": split, "data_dir": data_dir, "download": not no_download, "binarize": "static", "shuffle": False,
               "batch_size": 500}
    try:
        data = load_dataset(dataset, with_labels=True, **options)
    except ValueError:  # a split without labels: fine unless the model takes labels
        if vae.num_classes:
            raise
        data = load_dataset(dataset, **options)
    images, labels = collect(data, num_images)
    if labels is None:
        logging.getLogger("tfvae").warning("%s has no labels: latent_space.png uses one colour.", dataset)
    metrics_csv = pathlib.Path(model) / "metrics.csv"
    for path in plots.explore(vae, images, labels, out_dir, metrics_csv, plots.CLASS_NAMES.get(dataset)):
        click.echo(f"Wrote {path}")


@main.command("gradient-variance", context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True))
@model_data_options
@click.option("--split", default="test")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, help="Examples in the minibatch whose gradient is drawn.")
@click.option("--num-draws", type=click.IntRange(2, 10000), default=100, help="Gradient draws per estimator.")
@click.option("--estimator", "estimators", type=click.Choice(GRADIENT_ESTIMATORS), multiple=True,
              help="Repeat to choose [default: every estimator that applies to the model's objective].")
@click.option("--objective", type=click.Choice(["elbo", "iwae"]), default=None,
              help="The bound whose estimators are measured [default: the model's own; needed for wake-sleep models].")
@click.option("--num-samples", type=click.IntRange(1, 10000), default=None,
              help="K, samples per example in the bound [default: the model's own].")
@click.option("--seed", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@user_errors
@picture_out("gradient_variance", "gradient_variance.png")
def gradient_variance(model, dataset, data_dir, no_download, split, batch_size, num_draws, estimators, objective, num_samples,
                      seed, out, as_json):
    """Variance and signal-to-noise ratio of each gradient estimator on MODEL (a run directory or .keras file)."""
    from tfvae import plots
    from tfvae.checkpoints import load_model
    from tfvae.diagnostics import gradient_variance as measure

    vae = load_model(model)
    dataset, data_dir = data_source_for(model, dataset, data_dir)
    images, labels = _held_out(vae, dataset, split, data_dir, no_download, limit=batch_size)
    results = measure(vae, images, labels=labels, gradient_estimators=estimators or None, objective=objective,
                      num_samples=num_samples, num_draws=num_draws, seed=seed)
    title = f"Gradient variance, {objective or vae.objective} with K={num_samples or vae.num_samples}"
    plots.save(plots.gradient_variance_chart(results, title), out, "gradient_variance")
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo(f"{'estimator':24} {'encoder variance':>17} {'decoder variance':>17} {'encoder SNR':>12} {'decoder SNR':>12}")
        for name, row in results.items():
            click.echo(f"{name:24} {row['encoder_variance']:17.4g} {row['decoder_variance']:17.4g} "
                       f"{row['encoder_snr']:12.4g} {row['decoder_snr']:12.4g}")
    click.echo(f"Wrote {out}", err=as_json)


@main.command(context_settings=CONTEXT)
def datasets():
    """List the datasets available locally, and the image datasets TFDS can download by name."""
    from tfvae.data import available_datasets

    found = available_datasets()
    click.echo("Available locally:")
    for name, where in sorted(found["local"].items()):
        click.echo(f"  {name:16} {where}")
    if not found["local"]:
        click.echo("  (none; apt-get install dataset-fashion-mnist gives fashion_mnist offline)")
    click.echo("By name through TensorFlow Datasets (downloaded on first use):")
    click.echo("  " + ", ".join(found["by_name"]))
    click.echo("Any folder of IDX files or .npz file works with --data-dir.")
