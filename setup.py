"""tfvae: Variational Autoencoders for Keras 3 and TensorFlow Probability."""

import pathlib
import re

from setuptools import setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "tfvae" / "_version.py").read_text()).group(1)

setup(
    name="tfvae",
    version=VERSION,
    description="Variational Autoencoders for Keras 3 and TensorFlow Probability: XLA training, model.fit, TF Serving export.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The command line lives in cli/ but installs as tfvae.cli, never as a top-level `cli` module.
    packages=["tfvae", "tfvae.data", "tfvae.models", "tfvae.cli"],
    package_dir={"tfvae.cli": "cli"},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-probability>=0.25,<0.26",
        "tf-keras>=2.21,<2.22",  # imported internally by tensorflow-probability
        "keras>=3.10,<4",
        "tensorflow-datasets>=4.9,<4.10",
        "importlib_resources",  # needed by tensorflow-datasets downloads, not declared by it
        "tensorboard>=2.21,<2.22",  # TensorFlow 2.21 no longer pulls it in
        "numpy>=1.26,<3",
        "click>=8.1,<9",
        "pillow>=10",
        "matplotlib>=3.7",  # figures (tfvae.plots), imported only when drawing
    ],
    extras_require={
        "test": ["pytest>=8", "scipy>=1.11"],
        # The documentation site (mkdocs.yml, docs/) and its browser test (tests/test_docs.py, with Debian's chromium).
        "docs": [
            "mkdocs>=1.6,<2",
            "mkdocs-material>=9.5,<10",
            "mkdocstrings[python]>=1.0,<2",
            "mkdocstrings-python>=2.0,<3",
            "griffelib>=2.0,<3",  # imported by docs/hooks.py, as mkdocstrings-python loads the package
            "mkdocs-click>=0.9,<1",
            "pymdown-extensions>=10.7,<14",
            "pyyaml>=6",
            "selenium>=4.20,<5",
        ],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
    },
    entry_points={"console_scripts": ["tfvae = tfvae.cli.main:main"]},
)
