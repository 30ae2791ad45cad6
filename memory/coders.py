"""Image codecs for the ``codec`` memory: JPEG and WebP through Pillow, JPEG XL and AVIF through
``imagecodecs`` (the optional ``codecs`` extra: ``pip install 'cl-env[codecs]'``).

A coder turns one ``uint8 (C, H, W)`` image (``C`` = 1 grey, 3 colour) into bytes and back, and
says how many bytes it keeps once for every item (:attr:`Coder.shared_bytes`).

JPEG is stored as abbreviated streams (ITU-T T.81 Annex B.4-B.5, "abbreviated format for
compressed image data"): the quantisation and Huffman tables of quality ``q`` and the frame and
scan headers are the same for every image of one shape, so they are kept once (and counted once),
and each item holds only its entropy-coded scan. On 28x28 MNIST the tables alone are ~570 bytes,
more than the image: a per-item interchange file would waste most of the budget on repeats.
WebP, JPEG XL and AVIF items are whole files (their containers included).
"""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import torch
from PIL import Image, features

EXTRA = "pip install 'cl-env[codecs]' (or pip install imagecodecs)"
PILLOW_CODECS = {"jpeg": "JPEG", "webp": "WEBP"}
IMAGECODECS = {"jxl": "jpegxl", "avif": "avif"}
ALL_CODECS = (*PILLOW_CODECS, *IMAGECODECS)


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs


def available_codecs() -> list[str]:
    """The codecs this installation can run."""
    out = [c for c, fmt in PILLOW_CODECS.items() if features.check({"JPEG": "jpg", "WEBP": "webp"}[fmt])]
    if importlib.util.find_spec("imagecodecs") is not None:
        ic = _imagecodecs()
        out += [c for c, mod in IMAGECODECS.items() if ic is not None and getattr(ic, mod.upper(), None)
                and getattr(ic, mod.upper()).available]
    return out


def check_codec(codec: str, quality: int) -> None:
    """One clear error for an unknown or missing codec or a quality out of range."""
    have = available_codecs()
    if codec not in ALL_CODECS:
        raise ValueError(f"codec: unknown codec {codec!r}; available here: {have}; "
                         f"{sorted(set(ALL_CODECS) - set(have)) or 'none'} need the codecs extra: {EXTRA}")
    if codec not in have:
        raise ValueError(f"codec: {codec!r} needs imagecodecs with {IMAGECODECS.get(codec, codec)} support, "
                         f"which is not installed; fix: {EXTRA}; available here: {have}")
    if isinstance(quality, bool) or not isinstance(quality, int | np.integer) or not 1 <= quality <= 100:
        raise ValueError(f"codec: quality must be an integer in 1..100 (higher keeps more detail), got {quality!r}")


def _mode(channels: int) -> str:
    if channels not in (1, 3):
        raise ValueError(f"codec: images must have 1 or 3 channels, got {channels}")
    return "L" if channels == 1 else "RGB"


def _to_pil(image: np.ndarray) -> Image.Image:
    c = image.shape[0]
    return Image.fromarray(image[0] if c == 1 else image.transpose(1, 2, 0), _mode(c))


def _from_pil(im: Image.Image, channels: int) -> np.ndarray:
    mode = _mode(channels)
    a = np.asarray(im if im.mode == mode else im.convert(mode))
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def _segment_end(data: bytes, marker: bytes) -> int:
    """Index just past the JPEG marker segment ``marker`` (its 2-byte length included)."""
    i = data.index(marker)
    return i + 2 + int.from_bytes(data[i + 2:i + 4], "big")


class Coder:
    """Base: ``encode`` / ``decode`` one image, and the bytes kept once for all items."""

    name = ""
    shared_bytes = 0

    def __init__(self, quality: int, shape: tuple[int, int, int]):
        self.quality, self.shape = int(quality), tuple(shape)

    def encode(self, image: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def decode_many(self, items: list[bytes]) -> torch.Tensor:
        """Decode a replay batch: ``uint8 (n, C, H, W)``. (torchvision's batched ``decode_jpeg``
        measured 5x faster on 28x28 items, but its image codecs are deprecated since torchvision
        0.29; Pillow, image by image, keeps replay within 2x of the reservoir's wall time.)"""
        return torch.from_numpy(np.stack([self.decode(b) for b in items]))


class JpegCoder(Coder):
    """Baseline JPEG (libjpeg through Pillow, standard Huffman tables, 4:2:0 chroma for colour) in
    abbreviated streams: the tables-only stream and the frame/scan headers are kept once."""

    name = "jpeg"

    def __init__(self, quality: int, shape: tuple[int, int, int]):
        super().__init__(quality, shape)
        blank = _to_pil(np.zeros(self.shape, np.uint8))
        self.tables = self._save(blank, streamtype=1)  # SOI, DQT, DHT, EOI
        first = self._save(blank, streamtype=2)  # SOI, APP0, SOF, SOS header, scan, EOI
        self.header = first[:_segment_end(first, b"\xff\xda")]
        sof = self.header.index(b"\xff\xc0")
        self._head, self._tail = self.header[:sof], self.header[sof:]
        self.shared_bytes = len(self.tables) + len(self.header)

    def _save(self, im: Image.Image, streamtype: int) -> bytes:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=self.quality, streamtype=streamtype)
        return buf.getvalue()

    def encode(self, image: np.ndarray) -> bytes:
        data = self._save(_to_pil(image), streamtype=2)
        if not data.startswith(self.header):  # the headers depend only on shape and quality
            raise RuntimeError("codec: JPEG headers differ between items; cannot share them")
        return data[len(self.header):-2]  # the entropy-coded scan (EOI dropped)

    def _stream(self, data: bytes) -> bytes:
        """An item's scan back in a whole JPEG file: SOI, APP0, the shared tables, SOF, SOS, scan, EOI."""
        return self._head + self.tables[2:-2] + self._tail + data + b"\xff\xd9"

    def decode(self, data: bytes) -> np.ndarray:
        return _from_pil(Image.open(io.BytesIO(self._stream(data)), formats=["JPEG"]), self.shape[0])


class WebpCoder(Coder):
    """Lossy WebP (libwebp through Pillow) at quality ``q``, whole files."""

    name = "webp"

    def encode(self, image: np.ndarray) -> bytes:
        buf = io.BytesIO()
        _to_pil(image).save(buf, "WEBP", quality=self.quality, method=4)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        return _from_pil(Image.open(io.BytesIO(data), formats=["WEBP"]), self.shape[0])


class ImagecodecsCoder(Coder):
    """JPEG XL or AVIF through ``imagecodecs`` at ``level = quality``, whole files."""

    def __init__(self, quality: int, shape: tuple[int, int, int], codec: str):
        super().__init__(quality, shape)
        ic = _imagecodecs()
        if ic is None:
            raise ValueError(f"codec: {codec!r} needs imagecodecs, which is not installed; fix: {EXTRA}")
        self.name, mod = codec, IMAGECODECS[codec]
        self._enc, self._dec = getattr(ic, f"{mod}_encode"), getattr(ic, f"{mod}_decode")

    def encode(self, image: np.ndarray) -> bytes:
        arr = image[0] if self.shape[0] == 1 else image.transpose(1, 2, 0)
        if self.name == "avif" and arr.ndim == 2:  # libavif ignores the quality of grey (YUV400) images:
            arr = np.repeat(arr[:, :, None], 3, axis=2)  # coded as colour, whose chroma is flat
        return bytes(self._enc(np.ascontiguousarray(arr), level=self.quality))

    def decode(self, data: bytes) -> np.ndarray:
        a = np.asarray(self._dec(data))
        if self.shape[0] == 1:
            return (a[:, :, 0] if a.ndim == 3 else a)[None]
        return a.transpose(2, 0, 1)


def make_coder(codec: str, quality: int, shape: tuple[int, int, int]) -> Coder:
    """The coder of ``codec`` at ``quality`` for images of ``shape`` (checked)."""
    check_codec(codec, quality)
    _mode(shape[0])
    if codec == "jpeg":
        return JpegCoder(quality, shape)
    if codec == "webp":
        return WebpCoder(quality, shape)
    return ImagecodecsCoder(quality, shape, codec)
