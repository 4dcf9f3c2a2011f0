"""morphnas: neural architecture search as a remote service."""

__version__ = "0.1.0"
