"""Errors kfkit raises for bad input: each message names the field, column or value at fault."""


class KfkitError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class ConfigError(KfkitError):
    """A parameter, path or setting is invalid."""


class QueryError(KfkitError):
    """The SQL cannot run: syntax, unknown table, bad parameter."""


class IngestError(KfkitError):
    """The query ran, but its result cannot become the requested datasets."""


class ValidationError(KfkitError):
    """Data validation found blocking anomalies."""
