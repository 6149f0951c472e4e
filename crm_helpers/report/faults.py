"""Faults around the chapters' code: hung or dead kernels, signals, unwritable or full disks.

A chapter's kernel runs in its own process group (jupyter_client starts it in a new session), so
stopping a chapter means killing that group: the kernel and anything it started. ``Kernels``
remembers each running chapter's group so that the run's watchdog (a chapter past
``run.chapter_timeout_seconds``) or a signal (SIGINT, SIGTERM) can stop it from the main thread;
nbclient then sees the dead kernel within a second and papermill writes the notebook as far as
it got.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import OutputError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}
NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")
SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Signalled(BaseException):  # noqa: N818  (a BaseException, like KeyboardInterrupt)
    """Raised in the main thread when the run receives SIGINT or SIGTERM."""

    def __init__(self, signum: int):
        super().__init__(SIGNAL_NAMES.get(signum, str(signum)))
        self.signum = signum


class Received:
    """The signal a run received, if any (a library may turn ``Signalled`` into its own error)."""

    signum: int | None = None

    def handler(self, signum: int, frame: Any) -> None:
        """Remember the signal and stop the main thread where it is."""
        self.signum = signum
        raise Signalled(signum)


@contextmanager
def signals(handler: Any = None) -> Iterator[Received]:
    """SIGINT and SIGTERM raise ``Signalled`` (or get ``handler``) inside the block.

    Yields what was received. Only the main thread can set signal handlers; elsewhere the
    block changes nothing.
    """
    received = Received()
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.signal(s, handler or received.handler) for s in SIGNAL_NAMES}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Kernels:
    """The process groups of the running chapters' kernels, to stop them from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, int] = {}
        self._reasons: dict[str, str] = {}
        self._all: str | None = None  # set once every chapter must stop (a signal, a full disk)

    def started(self, slug: str, km: Any) -> None:
        """Record the kernel of a chapter (called by the engine once the kernel runs)."""
        provisioner = getattr(km, "provisioner", None)
        group = getattr(provisioner, "pgid", None) or getattr(provisioner, "pid", None)
        if group is None:
            return
        with self._lock:
            self._groups[slug] = group
            if self._all and slug not in self._reasons:
                self._reasons[slug] = self._all
            if slug in self._reasons:  # stopped before its kernel was up
                _kill_group(group)

    def finished(self, slug: str) -> None:
        """Forget a chapter's kernel (its notebook has returned)."""
        with self._lock:
            self._groups.pop(slug, None)

    def stop(self, slug: str, reason: str) -> None:
        """Kill a chapter's kernel and everything it started; ``reason`` says why."""
        with self._lock:
            self._reasons.setdefault(slug, reason)
            group = self._groups.get(slug)
            if group is not None:
                _kill_group(group)

    def stop_all(self, reason: str) -> None:
        """Kill every running kernel, and any that starts from now on."""
        with self._lock:
            self._all = self._all or reason
            slugs = list(self._groups)
        for slug in slugs:
            self.stop(slug, reason)

    def reason(self, slug: str) -> str | None:
        """Why a chapter was stopped (``timeout``, ``interrupted``, ``no_space``), or None."""
        with self._lock:
            return self._reasons.get(slug) or self._all

    @property
    def stopping(self) -> str | None:
        """Why every chapter is being stopped, or None."""
        return self._all


def _kill_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ----------------------------------------------------------------------------- disk and folder
def is_no_space(exc: BaseException | str | None) -> bool:
    """Whether an exception (or an error text) says the disk or the quota is full."""
    if exc is None:
        return False
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        return True
    return any(t.lower() in str(exc).lower() for t in NO_SPACE_TEXT)


def is_not_writable(exc: BaseException) -> bool:
    """Whether an exception says a path cannot be written (permissions, read-only, not a folder)."""
    return isinstance(exc, OSError) and exc.errno in NOT_WRITABLE


def no_space_error(path: Path | str, latest: Path, resume_hint: str) -> OutputError:
    """The message for a full disk: the path, what is left behind, what to do."""
    return OutputError(
        f"{path}: no space left on device; the run stopped, its folder is incomplete and "
        f"{latest} is unchanged. Free some space (or choose another --reports-dir) and "
        f"{resume_hint}"
    )


def not_writable_error(folder: Path | str, exc: OSError) -> OutputError:
    """The message for an output folder that cannot be created or written."""
    why = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        why += " (a file is in the way of the folder)"
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(folder) else ""
    return OutputError(
        f"{folder}: cannot write the report in this folder: {why.lower()}{where}. Make it "
        "writable or choose another output folder with --reports-dir"
    )
