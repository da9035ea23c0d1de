"""The SDK's version, in its own module so that SDK modules can read it without importing `noukai`."""

from importlib.metadata import version

__version__ = version("noukai")
"""Written once, in this distribution's pyproject.toml."""
