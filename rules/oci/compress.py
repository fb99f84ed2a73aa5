"""Compressed image layers: a layer's tar compressed once, deterministically, and cached.

A compression node's key is the uncompressed tar's digest, the algorithm and the level (and
this executor's version): two environments sharing a layer share its compressed blob, and a
changed layer recompresses only itself. The image config's `diff_ids` stay the tars' digests.

The bytes depend on nothing but those inputs (and the zlib/zstd libraries):
- gzip: one member, with no file name, mtime 0, OS byte 255 ("unknown") and the usual XFL
  byte; the deflate stream is made of 1 MiB blocks, each compressed with the 32 KiB before it
  as its dictionary and ended by a sync flush (the scheme of pigz), so every core compresses
  and the output is the same whatever the number of threads;
- zstd: zstandard's multithreaded mode (at least one worker: its frames are the same for any
  number), with the content size and a checksum in the frame.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from graphbuild.api import ActionFailed, ExecContext, OutputRef, RuleContext, executor, media
from graphbuild.rules.oci.descriptors import ImageLayer

#: algorithm -> (media type, default level, lowest level, highest level)
ALGORITHMS: dict[str, tuple[str, int | None, int, int]] = {
    "gzip": (media.LAYER_TAR_GZIP, 6, 1, 9),
    "zstd": (media.LAYER_TAR_ZSTD, 3, 1, 19),
    "none": (media.LAYER_TAR, None, 0, 0),
}
_BLOCK = 1 << 20
_WINDOW = 32 * 1024


@dataclass(frozen=True)
class Compression:
    """How an environment's layers are compressed for its image."""

    algorithm: str = "gzip"
    level: int | None = None

    def __post_init__(self) -> None:
        problem = compression_problem(self.algorithm, self.level)
        if problem:
            raise ValueError(problem)
        if self.level is None:
            object.__setattr__(self, "level", ALGORITHMS[self.algorithm][1])

    @property
    def media_type(self) -> str:
        return ALGORITHMS[self.algorithm][0]


def compression_problem(algorithm: str, level: int | None) -> str | None:
    """What is wrong with a compression setting, for the attribute's error; None if nothing."""
    if algorithm not in ALGORITHMS:
        return f"layer_compression must be one of {', '.join(repr(a) for a in ALGORITHMS)}, not {algorithm!r}"
    _, _, low, high = ALGORITHMS[algorithm]
    if level is None:
        return None
    if algorithm == "none":
        return "layer_compression_level needs a compression ('gzip' or 'zstd')"
    if not low <= level <= high:
        return f"layer_compression_level for {algorithm} must be between {low} and {high}, not {level}"
    return None


def compressed_layer(ctx: RuleContext, name: str, tar: OutputRef, compression: Compression) -> ImageLayer:
    """Declare the node compressing `tar` (one of this target's layers) and return the layer as
    an image lists it. With `none`, the tar itself is the blob."""
    if compression.algorithm == "none":
        return ImageLayer(blob=tar, media_type=media.LAYER_TAR, tar=tar)
    node = ctx.action(f"compress.{name}", executor=compress_layer, kind="oci.compress", outputs=["layer"],
                      inputs={"tar": tar, "algorithm": compression.algorithm, "level": compression.level},
                      description=f"{compression.algorithm} {name} of {ctx.label}")
    return ImageLayer(blob=node.output("layer"), media_type=compression.media_type, tar=tar)


@executor("oci.compress", version=2)
def compress_layer(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `tar` (an uncompressed layer), `algorithm`, `level`; output `layer`."""
    tar, algorithm, level = ctx.path("tar"), ctx.inputs["algorithm"], ctx.inputs["level"]
    problem = compression_problem(algorithm, level)
    if problem or algorithm == "none":
        raise ActionFailed(problem or "nothing to compress", bad_input=True)
    threads = max(1, os.cpu_count() or 1)
    with open(tar, "rb") as source, open(ctx.out("layer"), "wb") as dest:
        if algorithm == "gzip":
            write_gzip(source, dest, level=level, threads=threads)
        else:
            write_zstd(source, dest, level=level, threads=threads, size=tar.stat().st_size)
    size, original = ctx.out("layer").stat().st_size, tar.stat().st_size
    ctx.summarize(f"{algorithm} -{level}: {original / 1e6:.1f} MB -> {size / 1e6:.1f} MB")
    return {"media_type": ALGORITHMS[algorithm][0], "diff_id": "sha256:" + tar.name, "size": size,
            "uncompressed_size": original}


def write_gzip(source: BinaryIO, dest: BinaryIO, *, level: int, threads: int) -> None:
    """`source` gzip-compressed into `dest`, deterministically (see the module's docstring)."""
    extra_flags = b"\x02" if level == 9 else b"\x04" if level == 1 else b"\x00"
    dest.write(b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + extra_flags + b"\xff")
    crc, length = 0, 0
    pending: deque[Future[bytes]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gzip") as pool:
        for window, block, last in _blocks(source):
            crc = zlib.crc32(block, crc)
            length += len(block)
            pending.append(pool.submit(_deflate, block, window, level, last))
            while len(pending) > 2 * threads:  # bounded memory: a few blocks in flight
                dest.write(pending.popleft().result())
        while pending:
            dest.write(pending.popleft().result())
    dest.write(struct.pack("<II", crc & 0xFFFFFFFF, length & 0xFFFFFFFF))


def _blocks(source: BinaryIO) -> Iterator[tuple[bytes, bytes, bool]]:
    """(the 32 KiB before the block, the block, whether it is the last) over `source`; an empty
    source is one empty last block."""
    window = b""
    block = source.read(_BLOCK)
    while True:
        following = source.read(_BLOCK)
        yield window, block, not following
        if not following:
            return
        window = block[-_WINDOW:]
        block = following


def _deflate(block: bytes, window: bytes, level: int, last: bool) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY,
                                  *([window] if window else []))
    return compressor.compress(block) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def write_zstd(source: BinaryIO, dest: BinaryIO, *, level: int, threads: int, size: int) -> None:
    import zstandard

    compressor = zstandard.ZstdCompressor(level=level, threads=max(1, threads), write_checksum=True,
                                          write_content_size=True)
    compressor.copy_stream(source, dest, size=size)


def decompressed_digest(path: Path, media_type: str) -> str:
    """The sha256 of a layer blob's uncompressed bytes (for checks and tests)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in _decompressed(handle, media_type):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _decompressed(handle: BinaryIO, media_type: str) -> Iterator[bytes]:
    if media_type in media.UNCOMPRESSED_LAYERS:
        while chunk := handle.read(_BLOCK):
            yield chunk
    elif media_type.endswith("zstd"):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(handle)
        while chunk := reader.read(_BLOCK):
            yield chunk
    else:
        import gzip

        with gzip.GzipFile(fileobj=handle) as reader:
            while chunk := reader.read(_BLOCK):
                yield chunk
