"""The package version, in its own module so that SDK modules can read it without importing `noukai`."""

__version__ = "0.1.0"
