"""An image's layers as rules declare them and as executors receive them.

`ImageLayer` is what analysis hands around (which node's output is the blob a manifest lists,
which one is the tar under it); `as_input()` turns it into the plain data a node's inputs
hold, and `ResolvedLayer.from_input()` reads that data back in the executor, once the
outputs are paths of the blob store. Nothing else needs to know the dict's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphbuild.api import OutputRef, media


@dataclass(frozen=True)
class ImageLayer:
    """One layer of an image.

    `blob` is what the manifest lists and the registry stores (compressed, or the tar itself);
    `tar` is the uncompressed tar, whose sha256 is the layer's diff_id and which the Docker
    engine loads; a layer pulled from a registry has no tar here, its config gives `diff_id`."""

    blob: OutputRef
    media_type: str
    tar: OutputRef | None = None
    diff_id: str = ""

    def as_input(self) -> dict[str, Any]:
        return {"blob": self.blob, "media_type": self.media_type, "tar": self.tar, "diff_id": self.diff_id}

    @property
    def loadable(self) -> OutputRef:
        """What `docker load` is given: the tar when there is one (nothing to decompress)."""
        return self.tar or self.blob

    def uncompressed(self) -> ImageLayer:
        """The same layer listed as its tar (for images that are loaded, never pushed)."""
        if self.tar is None:
            return self
        return ImageLayer(blob=self.tar, media_type=media.LAYER_TAR, tar=self.tar)


@dataclass(frozen=True)
class ResolvedLayer:
    """An `ImageLayer` inside an executor: its outputs are files of the blob store, named by
    their sha256."""

    blob: Path
    media_type: str
    tar: Path | None
    diff_id: str

    @classmethod
    def from_input(cls, value: Mapping[str, Any]) -> ResolvedLayer:
        tar = value.get("tar")
        return cls(blob=Path(value["blob"]), media_type=value["media_type"], tar=Path(tar) if tar else None,
                   diff_id=value.get("diff_id") or "")

    @property
    def digest(self) -> str:
        return "sha256:" + self.blob.name

    @property
    def size(self) -> int:
        return self.blob.stat().st_size

    @property
    def diff(self) -> str:
        """The digest of the uncompressed tar (the image config's `rootfs.diff_ids`)."""
        if self.tar is not None:
            return "sha256:" + self.tar.name
        if self.diff_id:
            return self.diff_id
        return self.digest  # an uncompressed layer pulled as it is

    @property
    def loadable(self) -> Path:
        return self.tar or self.blob

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
