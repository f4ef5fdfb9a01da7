"""Exceptions raised by cera-rag: each names the problem and what to do about it."""

from __future__ import annotations


class CERAError(Exception):
    """Base class for every error cera-rag raises on purpose."""


class DataError(CERAError, ValueError):
    """The Evidence Inference data is missing, malformed or inconsistent."""


class CheckpointError(CERAError, OSError):
    """A model directory is missing, incomplete, corrupt or unsafe to load."""


class ConfigError(CERAError, ValueError):
    """A configuration file or value is invalid."""
