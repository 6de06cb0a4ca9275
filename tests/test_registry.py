"""One registry of parts: every kind with every prior and posterior across fresh processes, registration where defined,
the docs' tables, the run configuration by concern, and what a file that cannot be loaded says."""

import ast
import json
import pathlib
import subprocess
import sys
import warnings
import zipfile

import click
import every_part
import keras
import numpy as np
import pytest
from conftest import MNIST_DIR, REPO, invoke_cli

import tfvae
from tfvae import names, registry, strategies
from tfvae.config import SECTIONS, RunConfig, default, read_run_config
from tfvae.data import pipeline
from tfvae.errors import RunError, UnloadableModel

EVERY_PART = pathlib.Path(every_part.__file__)


def run_step(*args):
    result = subprocess.run([sys.executable, str(EVERY_PART), *map(str, args)], check=False, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


@pytest.mark.slow
def test_every_kind_prior_and_posterior_saves_reloads_evaluates_completes_and_serves(tmp_path):
    run_step("build", tmp_path, MNIST_DIR)  # one process builds, trains a step, saves and exports them all
    loaded = run_step("load", tmp_path, MNIST_DIR)  # a fresh one loads (Keras and tfvae), evaluates, completes, resumes
    served = run_step("serve", tmp_path)  # a third, that cannot import tfvae or TFP, calls every signature
    combinations = dict(every_part.combinations())
    assert set(loaded) == set(served) == set(combinations)
    parts = [(settings["model"], settings.get("prior"), settings.get("posterior")) for settings in combinations.values()]
    kinds_of_labels = set(every_part.KINDS) - {"vae"}
    assert {(kind, prior) for kind, prior, _ in parts} >= {(kind, prior) for kind in every_part.KINDS
                                                           for prior in registry.PRIORS
                                                           if kind in kinds_of_labels or prior not in every_part.PRIORS_OF_LABELS}
    assert {(kind, posterior) for kind, _, posterior in parts} >= {(kind, posterior) for kind in every_part.KINDS
                                                                   for posterior in registry.POSTERIORS}
    assert all(-800 < elbo < 0 for elbo in loaded.values()), loaded
    assert served["m2-mixture-diagonal"][0] == "classify" and "classify" in served["semi-supervised"]


def test_every_registered_name_loads_its_class_and_every_saveable_class_is_registered_where_defined():
    for kind, entries in registry.KINDS.items():
        for name, entry in entries.items():
            assert entry.load() is not None, (kind, name)
    assert registry.lookup("prior", "mixture") is tfvae.priors.MixtureOfGaussians
    with pytest.raises(ValueError, match="Unknown posterior 'planar'. Expected one of diagonal, full_covariance, iaf"):
        registry.lookup("posterior", "planar")
    for path in sorted((REPO / "tfvae").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            defines_config = isinstance(node, ast.ClassDef) and any(
                isinstance(item, ast.FunctionDef) and item.name == "get_config" for item in node.body)
            if defines_config and not node.name.startswith(("_", "Base")):
                decorators = " ".join(ast.unparse(d) for d in node.decorator_list)
                assert "register_keras_serializable" in decorators, f"{path}: {node.name}"


def registry_table(kind, column):
    """The docs' table of `kind`'s parts, as `tfvae.registry` lists them."""
    rows = [f"| {column} | class | what it is |", "| --- | --- | --- |"]
    for name, entry in registry.KINDS[kind].items():
        rows.append(f"| `{name}` | `{entry.public_name}` | {entry.summary.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


@pytest.mark.parametrize("kind, column", [("model", "`--model`"), ("prior", "`--prior`"), ("posterior", "`--posterior`"),
                                          ("likelihood", "`--likelihood`")])
def test_the_docs_tables_are_the_registry(kind, column):
    table = registry_table(kind, column)
    pages = "".join(page.read_text() for page in sorted((REPO / "docs").rglob("*.md")))
    assert table in pages, f"A page of docs/ (guides/models.md, guides/labels.md) should hold this table:\n{table}"


def test_a_helmholtz_run_defaults_to_kl_warmup_over_most_of_its_epochs_and_none_without_a_kl_weight():
    warmup = lambda **settings: RunConfig.for_model("hierarchical", **settings).optimization.warmup_epochs
    assert warmup() == 8 and RunConfig.for_model("hierarchical").optimization.epochs == 10
    assert (warmup(epochs=20), warmup(epochs=5), warmup(epochs=2), warmup(epochs=1)) == (16, 4, 1, 0)  # ends before the last
    assert warmup(epochs=20, warmup_epochs=3) == 3 and warmup(warmup_epochs=0) == 0  # what the user asks for
    wake_sleep = RunConfig.for_model("hierarchical", objective="reweighted_wake_sleep", num_samples=5)
    assert wake_sleep.optimization.warmup_epochs == 0
    wake_sleep.validate()  # no "KL warm-up anneals beta" refusal for a default the user did not ask for
    assert RunConfig.for_model("vae").optimization.warmup_epochs == 0 == RunConfig.for_model("conditional").optimization.warmup_epochs
    assert "(0; hierarchical: 8)" in " ".join(invoke_cli("train", "--help").output.split())


def test_the_run_configuration_is_split_by_concern_and_reads_old_flat_records(tmp_path):
    config = RunConfig.from_flat(dataset="fashion_mnist", latent_dim=2, prior="mixture", epochs=3, precision="mixed_bfloat16",
                                 output_dir="runs/x")
    record = config.to_json()
    assert set(record) == set(SECTIONS)
    assert record["data"]["dataset"] == "fashion_mnist" and record["model"]["prior"] == "mixture"
    assert record["optimization"]["epochs"] == 3 and record["execution"]["precision"] == "mixed_bfloat16"
    assert record["output"]["output_dir"] == "runs/x"
    (tmp_path / "new.json").write_text(json.dumps(record))
    assert read_run_config(tmp_path / "new.json") == config
    # A run written before the sections: one flat record, whose kl "analytic" was then the default.
    (tmp_path / "old.json").write_text(json.dumps({"dataset": "mnist", "latent_dim": 8, "kl": "analytic", "model": "vae",
                                                   "removed_setting": 1}))
    old = read_run_config(tmp_path / "old.json")
    assert (old.data.dataset, old.model.latent_dim, old.model.kl, old.model.prior) == ("mnist", 8, "auto", "standard_normal")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RunError, match="cannot be read"):
        read_run_config(tmp_path / "bad.json")
    with pytest.raises(RunError, match="Unknown run settings: latnet_dim"):
        RunConfig.from_flat(latnet_dim=3)
    with pytest.raises(RunError, match="Unknown prior 'vampire'. Expected one of standard_normal, mixture, vamp"):
        RunConfig.from_flat(prior="vampire").validate()


def test_hidden_units_size_the_one_layer_mlps_a_run_builds_and_are_recorded(tmp_path):
    import types

    config = RunConfig.from_flat(hidden_units=[64, 32]).validate()  # as JSON gives them
    assert config.model.hidden_units == (64, 32)
    (tmp_path / "run.json").write_text(json.dumps(config.to_json()))
    assert read_run_config(tmp_path / "run.json") == config
    info = types.SimpleNamespace(image_shape=(6, 5, 1), num_classes=3, num_labeled=10, num_examples=100)
    for kind in ("vae", "conditional", "m2"):
        model = registry.lookup("model", kind).from_run_config(RunConfig.for_model(kind, hidden_units=(16, 8)).model, info)
        assert [layer.units for layer in model.encoder.body.layers if isinstance(layer, keras.layers.Dense)] == [16, 8]
        if kind == "conditional":  # the run's auxiliary classifier has the encoder's body, and the kind's weight
            assert model.class_consistency_weight == 10.0
            assert [layer.units for layer in model.classifier.body.layers if isinstance(layer, keras.layers.Dense)] == [16, 8]
    without = RunConfig.for_model("conditional", class_consistency_weight=0.0).model
    assert registry.lookup("model", "conditional").from_run_config(without, info).classifier is None
    for settings, message in (
        ({"architecture": "conv", "hidden_units": (64,)}, "--hidden-units sizes the MLP's dense layers, not --architecture conv's"),
        ({"model": "hierarchical", "hidden_units": (64,)}, "--hidden-units applies to --model .* not to --model hierarchical"),
        ({"hidden_units": (64, 0)}, "Expected hidden_units >= 1"),
        ({"hidden_units": 64}, "Expected hidden_units to be a tuple of ints"),
    ):
        with pytest.raises(RunError, match=message):
            RunConfig.from_flat(**settings).validate()


def test_the_command_line_takes_its_defaults_and_choices_from_the_library():
    from tfvae.cli.main import train

    options = {param.name: param for param in train.params}
    for name, param in options.items():
        if name in ("gaussian_scale", "binarize", "jit", "latent_dims") or name not in RunConfig().flat():
            continue  # parsed from text, or not a setting of the run
        assert param.get_default(click.Context(train)) == default(name), name
    assert options["latent_dims"].get_default(click.Context(train)) == ",".join(map(str, default("latent_dims")))
    for kind in ("model", "prior", "posterior", "likelihood", "architecture"):
        assert list(options[kind].type.choices) == list(registry.KINDS[kind]), kind
    assert tuple(options["strategy"].type.choices) == names.STRATEGIES == tuple(strategies.STRATEGIES)  # each one built
    assert tuple(options["binarize"].type.choices) == ("dynamic", "static", "none")
    for binarize in names.BINARIZATIONS:  # every name the configuration accepts, the data pipeline accepts
        RunConfig.from_flat(binarize=binarize).validate()
        pipeline.make_pipeline(np.zeros((2, 3, 3, 1), np.uint8), np.zeros(2, np.int64), batch_size=2, binarize=binarize)


def test_a_whole_file_that_cannot_be_loaded_says_why(tmp_path):
    vae = tfvae.VAE.for_images((6, 5, 1), latent_dim=2)
    vae.save(tmp_path / "vae.keras")

    def rewritten(name, change):
        with zipfile.ZipFile(tmp_path / "vae.keras") as source, zipfile.ZipFile(tmp_path / name, "w") as target:
            for item in source.infolist():
                data = source.read(item)
                if item.filename == "config.json":
                    config = json.loads(data)
                    change(config)
                    data = json.dumps(config)
                target.writestr(item, data)
        return tmp_path / name

    newer = rewritten("newer.keras", lambda c: c["config"].update(tfvae_version="9.0.0"))
    with pytest.raises(UnloadableModel, match=r"saved by a newer tfvae \(9.0.0\) than this one"):
        tfvae.load_model(newer)
    unknown = rewritten("unknown.keras", lambda c: c.update(registered_name="tfvae>TimeTravelVAE"))
    with pytest.raises(UnloadableModel, match="class TimeTravelVAE, which this tfvae .* does not have"):
        tfvae.load_model(unknown)
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(tmp_path / "other.keras")
    with pytest.raises(UnloadableModel, match="class Sequential, not a tfvae model"):
        tfvae.load_model(tmp_path / "other.keras")


def test_conditional_log_likelihood_is_the_deprecated_name_of_completion_log_likelihood():
    vae = tfvae.VAE.for_images((6, 5, 1), latent_dim=2, seed=0)
    x = (np.random.default_rng(0).random((2, 6, 5, 1)) < 0.5).astype(np.float32)
    observed = tfvae.masks.make("top_half", (6, 5, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = vae.conditional_log_likelihood(x, observed, num_samples=20, seed=1).numpy()
    assert any(issubclass(w.category, DeprecationWarning) and "completion_log_likelihood" in str(w.message) for w in caught)
    np.testing.assert_array_equal(old, vae.completion_log_likelihood(x, observed, num_samples=20, seed=1).numpy())
