"""Reconstruction engines: the interface the detect pipeline uses, and `load_engine`."""
from .base import Engine, load_engine, resolve_device

__all__ = ["Engine", "load_engine", "resolve_device"]
