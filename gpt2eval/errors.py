"""Errors that mean the user must change something: the CLI prints them as one line, no traceback."""


class UserError(Exception):
    """Bad input or configuration. The message says what was wrong and what to do."""


class DataError(UserError):
    """A data file is missing, altered or malformed. The message names the file (and line, field)."""
