"""Typed errors for problems a user can cause. Each message says what was wrong and what to do."""

from __future__ import annotations


class RecsparkError(Exception):
    """Base class of every error recspark raises on purpose."""


class ConfigError(RecsparkError, ValueError):
    """A config file, key or value is wrong."""


class DataNotFoundError(RecsparkError, FileNotFoundError):
    """Input data is missing and could not be fetched."""


class DownloadError(RecsparkError):
    """A download failed or its checksum did not match."""


class DataFrameMissingColumnError(RecsparkError, ValueError):
    """A DataFrame handed to a stage lacks columns the stage needs."""


class DataQualityError(RecsparkError):
    """Too many input rows were malformed (see the quarantine output)."""


class ModelError(RecsparkError):
    """A saved model is missing, incomplete or incompatible."""


class HeaderError(DataQualityError):
    """A raw file's header line is not the one its layout expects (in any column order)."""
