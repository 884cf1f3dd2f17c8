"""Reading the text files users hand us (recipes, mixtures, data and question files) with errors that name them."""

from __future__ import annotations

from pathlib import Path


class NotTextError(ValueError):
    """A file that should hold UTF-8 text holds something else (a binary file, another encoding)."""


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; a file that is not UTF-8 text raises ``NotTextError`` naming it and the byte."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        raise NotTextError(
            f"{path}: the {what} is not UTF-8 text (byte 0x{byte:02x} at offset {exc.start}); is it a binary file?"
        ) from None
