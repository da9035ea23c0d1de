"""Noukai: run LLM flows on a self-hosted runtime and stream every step as typed events."""

__version__ = "0.1.0"

__all__ = ["__version__"]
