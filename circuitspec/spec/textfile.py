"""Reading the text files a user hands us (hypotheses, prompt JSONL, results.json).

One place turns every way a path can fail to be a text file into one
:class:`~circuitspec.errors.InputFileError` that names the file: it does not
exist, it is a folder, it cannot be read, it holds binary data, it is not
UTF-8, or it is empty. Callers parse the returned text and locate their own
problems by line and field.
"""

from __future__ import annotations

import os
from pathlib import Path

from circuitspec.errors import InputFileError

__all__ = ["read_text"]


def read_text(path: str | os.PathLike[str], what: str = "file", *, allow_empty: bool = False) -> str:
    """The UTF-8 text of ``path``; :class:`InputFileError` naming ``what`` and the file otherwise."""
    p = Path(path)
    if p.is_dir():
        raise InputFileError(str(p), f"is a folder, not a {what}")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputFileError(str(p), f"no such {what}") from None
    except PermissionError:
        raise InputFileError(str(p), f"cannot read the {what}: permission denied") from None
    except OSError as exc:
        raise InputFileError(str(p), f"cannot read the {what}: {exc.strerror or exc}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputFileError(str(p), f"holds binary data (a NUL byte at offset {nul}); "
                             f"expected a UTF-8 text {what}", data[:nul].count(b"\n") + 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(str(p), f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                             f"{exc.start}); save the {what} as UTF-8",
                             data[: exc.start].count(b"\n") + 1) from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark from Windows editors is not content
    if not allow_empty and not text.strip():
        raise InputFileError(str(p), f"the {what} is empty")
    return text
