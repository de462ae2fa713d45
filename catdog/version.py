"""The package version, in a module of its own: the code that records it imports nothing else of catdog."""

__version__ = "0.2.0"
