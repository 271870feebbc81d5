"""Where Jiangsu's drops are read from: one interface, a local folder (embedded default) or SFTP.

A transport only lists and reads files of one drop folder; what a complete drop is, and how its files
are checked, is the adapter's business (:mod:`adapters.jiangsu.manifest`).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol

from exchange.errors import TerminalError


class DropTransport(Protocol):
    """A drop folder: list its file names, read one file's bytes."""

    def describe(self, name: str = "") -> str:
        """A human-readable location of the folder or of one file in it (for errors)."""
        ...

    def list(self) -> list[str]:
        """The names of the files in the folder (no sub-folders)."""
        ...

    def read(self, name: str) -> bytes:
        """The bytes of one file, read in full (small files: manifests, signatures)."""
        ...

    def open(self, name: str) -> BinaryIO:
        """One file as a binary stream (data files, read in blocks so memory does not grow with them)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class LocalDrop:
    """A drop folder on the local file system (or a mounted share)."""

    def __init__(self, path: Path, setting: str = "EXCHANGE_JIANGSU_DROP_DIR") -> None:
        self.path = path
        self._setting = setting

    def describe(self, name: str = "") -> str:
        """The folder, or the file's path in it."""
        return str(self.path / name) if name else str(self.path)

    def list(self) -> list[str]:
        """File names in the folder; a missing folder is a configuration error."""
        if not self.path.is_dir():
            raise TerminalError(
                f"Jiangsu drop folder {self.path} does not exist; set {self._setting} to the folder "
                "Jiangsu delivers its CSV files to"
            )
        return sorted(p.name for p in self.path.iterdir() if p.is_file())

    def read(self, name: str) -> bytes:
        """The file's bytes."""
        return (self.path / name).read_bytes()

    def open(self, name: str) -> BinaryIO:
        """The file, opened for reading."""
        return (self.path / name).open("rb")

    def close(self) -> None:
        """Nothing to release."""
