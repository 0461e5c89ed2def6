"""Accord: a privacy-preserving data-sharing broker for safeguarding partnerships."""

__version__ = "0.1.0"
