"""Errors for users: each message names the file, key, column or row, and says what to do."""


class CRMError(Exception):
    """Base class of every error the CLI prints without a traceback."""


class ParamsError(CRMError):
    """A parameters file is invalid: unknown key, wrong type, value out of range, missing file."""


class DataError(CRMError):
    """An input table cannot be used at all (missing file or column, empty file, unreadable)."""


class RunError(CRMError):
    """A report run could not complete (a chapter failed, rendering failed)."""
