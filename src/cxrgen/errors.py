"""Exceptions whose message tells the user what to fix."""


class CxrgenError(Exception):
    """Base class: an error the user can act on (bad input, bad config, missing weights)."""


class DataError(CxrgenError, ValueError):
    """Input data is missing, empty or inconsistent (folders, label CSVs, ids)."""


class ConfigError(CxrgenError, ValueError):
    """A configuration value is unknown, out of range or contradicts the data."""
