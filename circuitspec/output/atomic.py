"""Atomic file writes: a reader sees the old file or the new one, never half of one.

A verify run can be interrupted (Ctrl-C, an out-of-memory kill, a rendering
error) while it writes its outputs. Each file is written to a hidden temporary
file in the same folder, flushed and fsynced, then moved over the target with
:func:`os.replace`, which is atomic on POSIX and Windows. If anything raises
before the move, the temporary file is removed, so no partial file is ever
left behind.

:func:`staged_dir` extends this to a set of files: they are all written into a
hidden staging folder inside the output folder and moved in only once every one
of them has been written, so a failure while rendering the PNG does not leave a
fresh ``results.json`` beside a stale ``report.md``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from circuitspec.errors import InvalidArgument

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "staged_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``.

    ``mode`` is ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``.
    If the ``with`` block raises, the temporary file is deleted and ``path`` is
    left as it was.
    """
    if mode not in ("w", "wb"):
        raise InvalidArgument(f"atomic_open writes whole files; mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        mode_bits = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode_bits)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_open(path, "w", newline="\n") as handle:
        handle.write(text)
    return Path(path)


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden staging folder; on a clean exit move its files into ``out_dir``.

    Files written into the staging folder replace same-named files in
    ``out_dir`` one by one with :func:`os.replace` (each move is atomic; the
    staging folder lives inside ``out_dir`` so every move stays on one file
    system). If the ``with`` block raises, the staging folder and everything in
    it are deleted and ``out_dir`` is untouched. Only top-level files are moved.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    try:
        yield stage
        files = sorted(p for p in stage.iterdir() if p.is_file())
        for file in files:
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        for file in files:
            os.replace(file, out / file.name)
        _fsync_dir(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
