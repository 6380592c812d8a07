"""Files written whole or not at all: a temporary file in the same folder, then ``os.replace``."""

from __future__ import annotations

import errno
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "remove_temporaries", "writable_dir"]

#: the name :func:`atomic_path` gives a temporary file: ``.<name>.<32 hex digits>.tmp[<suffix>]``
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp(\..+)?$")


def writable_dir(folder: str | os.PathLike, what: str = "--output_dir") -> Path:
    """Create ``folder`` (with its parents) and check that a file can be written there, before any output is.

    Args:
        folder: the output folder.
        what: how the user names it, for the message (e.g. ``"--output_dir"``).

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        ValueError: it cannot be created or written (e.g. a path through a file, a read-only disk); the folder, the
            reason and the fix named.
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".segq_write_test.{uuid.uuid4().hex}"  # processes of one run may probe the folder at once
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ValueError(
            f"Cannot write to the output folder {path} ({e.strerror or e}); pass a writable {what}."
        ) from e
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path in the folder of ``path``; on a clean exit it replaces ``path`` (``os.replace``), on an
    exception it is removed. For writers that take a file name (``torch.save``, NIfTI writers). A full disk
    (``ENOSPC``, ``EDQUOT``) is re-raised as an ``OSError`` that names the folder, the file and the fix.

    Args:
        path: the file to write; its folder must exist.
        suffix: ending of the temporary name, for writers that choose the format by it (e.g. ``".nii.gz"``).

    Example::

        with atomic_path("out/checkpoint.pt") as tmp:
            torch.save(state, tmp)
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} does not exist; create it before writing {os.path.basename(path)}.")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise OSError(e.errno, f"No space left on the disk of {folder} to write {os.path.basename(path)} (nothing "
                               "half-written is left); free space there or write to another disk, then rerun.") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all (:func:`atomic_path`), flushed to disk first."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for a plain open()
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def remove_temporaries(folder: str | os.PathLike, depth: int | None = None) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` that a killed run left in ``folder`` (a rerun's first
    step: a process killed by a signal runs no cleanup). Call it only when no other process writes there.

    Args:
        folder: the run's output folder (a missing one has none).
        depth: how many levels of subfolders to search (0: ``folder`` alone); ``None``: all.

    Returns:
        the deleted files.
    """
    found = []
    root = Path(folder)
    for current, dirs, files in os.walk(root):
        level = len(Path(current).relative_to(root).parts)
        if depth is not None and level >= depth:
            dirs.clear()
        found += [Path(current) / f for f in files if _TEMPORARY.match(f)]
    for path in found:
        path.unlink(missing_ok=True)
    return found
