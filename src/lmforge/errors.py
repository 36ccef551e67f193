"""One exception type for everything a user can get wrong.

The CLI turns a `UserError` into a single line on stderr and a non-zero exit code; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a flag, a path, a file row. The message is shown as one line, so keep it to one."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message if not hint else f"{message} (hint: {hint})")


class DataError(UserError):
    """A dataset file or row is unusable. Messages name `file:row: field: problem`."""

    exit_code = 1
