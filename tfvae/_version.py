"""Single source of the package version (read by setup.py without importing TensorFlow)."""

__version__ = "0.2.0"
