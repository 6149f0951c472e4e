"""Errors for users: each message names the file, key, column or row, and says what to do."""


class CRMError(Exception):
    """Base class of every error the CLI prints without a traceback."""


class ParamsError(CRMError):
    """A parameters file is invalid: unknown key, wrong type, value out of range, missing file."""


class DataError(CRMError):
    """An input table cannot be used at all (missing file or column, empty file, unreadable)."""


class RunError(CRMError):
    """A report run could not complete (a chapter failed, rendering failed)."""


class OutputError(CRMError):
    """The report cannot be written: the output folder is not writable, or the disk is full."""


class RunInterrupted(Exception):  # noqa: N818  (not an error of the user's: a signal)
    """A run stopped by SIGINT or SIGTERM; its folder is left incomplete and can be resumed.

    ``exit_code`` is the shell's convention for a process ended by that signal (128 + number).
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
