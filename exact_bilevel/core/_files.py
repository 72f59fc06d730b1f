"""File output, shared by every part of the package that writes files: one rule for output
paths, and atomic writes.

The output-path rule (:func:`atomic_write`, :func:`ensure_directory`):

* a regular file, or a new name in an existing directory, is written atomically: a
  temporary file beside it, fsync, rename; readers see the old file or the new one;
* a symlink is written *through*: the temporary file goes beside its target and replaces
  the target, so the link survives and points to the new content; a dangling symlink
  creates its target if the target's directory exists;
* a character device (``/dev/null``, a terminal), a FIFO, or an open file descriptor
  (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``) is written directly: no rename,
  never replaced by a regular file;
* refused, with an :class:`OutputPathError` naming the option and the rule: a directory, a
  block device or socket, a missing parent directory, a parent that is not a directory,
  a symlink loop, an empty path, and a path that is one of the command's inputs (the same
  file after resolving symlinks, or the same device and inode).

An ``OSError`` while writing (a read-only or full file system, no permission) is raised
as an :class:`OutputPathError` naming the option, the path and the system's reason; the
old file is left in place and no temporary file behind.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable

#: A path naming an open file descriptor (a symlink chain reaching one is written through
#: the given path, never resolved): ``/dev/fd/N``, ``/proc/PID/fd/N``, ``/proc/PID/task/TID/fd/N``.
_FD_PATH = re.compile(r"^(/dev/fd|/proc/[^/]+(/task/[^/]+)?/fd)/\d+$")


class OutputPathError(ValueError, OSError):
    """An output path that breaks the output-path rule, or a write to it that failed.

    A ``ValueError`` (bad input: the command line maps it to exit code 2) and an
    ``OSError`` (so that callers catching write failures keep catching it). The message
    names the option (``--output``, ``--out``, ``path``...), the path and the rule.
    """

    def __init__(self, option: str, path: str | os.PathLike[str], rule: str,
                 errno: int | None = None) -> None:
        self.option, self.path, self.rule = option, os.fspath(path), rule
        super().__init__(f"{option} {self.path}: {rule}")
        self.errno, self.strerror, self.filename = errno, rule, self.path

    def __str__(self) -> str:
        return f"{self.option} {self.path}: {self.rule}"


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, option: str = "path",
                 inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Write ``data`` to ``path`` under the output-path rule (module docstring).

    Parameters
    ----------
    path
        The output path as the user gave it.
    data
        The content; ``str`` is encoded as UTF-8.
    option
        The name of the option or argument that gave ``path``, used in error messages.
    inputs
        Paths the command reads (``'-'`` entries, standard input, are ignored):
        ``path`` must not be one of them.

    Raises
    ------
    OutputPathError
        ``path`` breaks the rule, or writing failed (the message states the reason).
    """
    given = os.fspath(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    kind, target = _classify(given, option, inputs)
    try:
        if kind == "direct":
            _write_direct(target, payload)
        else:
            _write_replace(target, payload)
    except OSError as exc:
        if isinstance(exc, OutputPathError):
            raise
        raise OutputPathError(option, given, f"cannot write: {_reason(exc)}",
                              exc.errno) from exc


def check_output(path: str | os.PathLike[str], *, option: str = "path",
                 inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Raise :class:`OutputPathError` now if :func:`atomic_write` would refuse ``path``
    (so that a command fails before its work, not after). Writes nothing."""
    _classify(os.fspath(path), option, inputs)


def ensure_directory(path: str | os.PathLike[str], *, option: str = "path") -> None:
    """Make ``path`` an existing directory (creating it and its parents if needed).

    Raises
    ------
    OutputPathError
        ``path`` is empty or ``'-'``, exists and is not a directory, or cannot be created
        (the message states the system's reason).
    """
    given = os.fspath(path)
    if given in ("", "-"):
        raise OutputPathError(option, repr(given), "must be a directory name "
                              "('-', standard output, cannot hold files)")
    if os.path.isdir(given):
        return
    if os.path.lexists(given):
        raise OutputPathError(option, given, "exists and is not a directory; give a "
                              "directory (it is created if missing)")
    try:
        os.makedirs(given, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(option, given, f"cannot create the directory: {_reason(exc)}",
                              exc.errno) from exc


def is_same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` are the same file: the same resolved path, or the same
    device and inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _reason(exc: OSError) -> str:
    """The system's reason of ``exc`` without a temporary file's name."""
    return exc.strerror or str(exc)


def _classify(given: str, option: str, inputs: Iterable[str | os.PathLike[str]]) -> \
        tuple[str, str]:
    """``('direct', path)`` to write into directly or ``('replace', target)`` to replace
    atomically; raises :class:`OutputPathError` for a path the rule refuses."""
    if given == "":
        raise OutputPathError(option, "''", "must be a file name")
    for source in inputs:
        source = os.fspath(source)
        if source not in ("", "-") and is_same_file(given, source):
            raise OutputPathError(option, given, f"is an input of this command ({source}); "
                                  "refusing to overwrite it (write to another file)")
    target, via_fd = _resolve(given, option)
    try:
        st = os.stat(given if via_fd else target)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputPathError(option, given, f"{_file_above(target)} is a file, not a "
                              "directory") from None
    except OSError as exc:
        raise OutputPathError(option, given, f"cannot use it: {_reason(exc)}",
                              exc.errno) from exc
    if st is None:
        if via_fd:
            raise OutputPathError(option, given, "names a closed file descriptor")
        parent = os.path.dirname(target)
        shown = "" if target == os.path.abspath(given) else f" (the symlink's target {target})"
        if os.path.lexists(parent) and not os.path.isdir(parent):
            raise OutputPathError(option, given, f"{parent} is not a directory{shown}")
        if not os.path.isdir(parent):
            raise OutputPathError(option, given, f"the directory {parent} does not exist"
                                  f"{shown}; create it first")
        return "replace", target
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise OutputPathError(option, given, "is a directory; give a file name")
    if stat.S_ISBLK(mode):
        raise OutputPathError(option, given, "is a block device; refusing to write to it")
    if stat.S_ISSOCK(mode):
        raise OutputPathError(option, given, "is a socket; give a file, a character device "
                              "or a FIFO")
    if via_fd or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "direct", given if via_fd else target
    return "replace", target


def _file_above(path: str) -> str:
    """The nearest existing ancestor of ``path`` (one that is not a directory)."""
    parent = os.path.dirname(path)
    while not os.path.lexists(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    return parent


def _resolve(given: str, option: str) -> tuple[str, bool]:
    """The path a symlink chain from ``given`` ends at (absolute; it may not exist), and
    whether the chain reaches an open file descriptor (``/dev/stdout``, ``/proc/*/fd/*``),
    which is written through the given path and never resolved."""
    p = os.path.abspath(given)
    for _ in range(40):
        if _FD_PATH.match(p):
            return p, True
        if not os.path.islink(p):
            return os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p)), \
                False
        p = os.path.join(os.path.realpath(os.path.dirname(p)), os.readlink(p))
        p = os.path.normpath(p)
    raise OutputPathError(option, given, "is a symlink loop (or a chain of over 40 links)")


def _write_direct(path: str, payload: bytes) -> None:
    """Write into an existing character device, FIFO or open file descriptor: never
    created, never replaced (``O_APPEND``: a file behind a descriptor keeps its content)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "wb") as fh:
        fh.write(payload)


def _write_replace(target: str, payload: bytes) -> None:
    """Write ``payload`` through a temporary file in ``target``'s directory, fsync and
    rename: a failure leaves the old file in place and no temporary file behind."""
    directory = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.",
                               suffix=".tmp")
    try:
        os.chmod(tmp, _mode(target))  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _mode(path: str) -> int:
    """The existing file's permissions, or ``0o666`` less the process umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
