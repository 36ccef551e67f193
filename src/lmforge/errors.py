"""One exception type for everything a user can get wrong.

The CLI turns a `UserError` into a single line on stderr and a non-zero exit code; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """Bad input: a flag, a path, a file row. The message is shown as one line, so keep it to one."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message if not hint else f"{message} (hint: {hint})")


class DataError(UserError):
    """A dataset file or row is unusable. Messages name `file:row: field: problem`."""

    exit_code = 1


class RowError(ValueError):
    """One bad row: names the field and says what is wrong, with a hint."""

    def __init__(self, field: str, problem: str, hint: str = ""):
        self.field, self.problem, self.hint = field, problem, hint
        super().__init__(f"{field}: {problem}" + (f" (hint: {hint})" if hint else ""))


# what a full, read-only or forbidden disk raises: reported as one line, not a traceback
_DISK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


@contextmanager
def writing(what: str, where: str | Path, hint: str | None = None) -> Iterator[None]:
    """Turn a disk failure while writing `what` into `where` into one UserError line naming both.

    Libraries do not all raise OSError for a full disk: safetensors raises its own error ("os error 28") and
    torch.save a RuntimeError ("unexpected pos"), so a failure with (almost) no space left counts as one too."""
    try:
        yield
    except Exception as e:
        reason = _disk_reason(e, Path(where))
        if reason is None:
            raise
        raise UserError(f"cannot write {what} to {where} ({reason})", hint=hint or "free space, or pick another path")


def _disk_reason(e: Exception, where: Path) -> str | None:
    if isinstance(e, OSError) and e.errno in _DISK_ERRORS:
        return e.strerror
    if "No space left" in str(e) or "os error 28" in str(e):
        return "No space left on device"
    import shutil

    probe = next((p for p in (where, *where.parents) if p.exists()), None)
    if probe is not None and shutil.disk_usage(probe).free < 1 << 20:
        return "No space left on device"
    return None
