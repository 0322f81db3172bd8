"""Renders an uploaded deck to page images, in a process of its own.

`python -m signaling.deck_render SOURCE OUT_DIR --kind pdf|png|jpeg ...` renders every
page of SOURCE to OUT_DIR (`p001.png` or `p001.jpg`, `t001.jpg`) and prints one JSON
line: `{"pages": [{"file", "thumb", "width", "height"}, ...]}`, or
`{"code", "message"}` with exit status 2 when the file is refused.

PDF rendering of a hostile file is where a document server is attacked (malformed
streams, decompression bombs, absurd page trees), so it runs here and not in the
server: with its own limits set before PyMuPDF is even imported (address space, CPU
seconds, size of any file written, no core dump), a wall-clock timeout held by the
caller (signaling.decks), and an input that is only read. MuPDF runs no JavaScript
and opens no embedded file or link while rendering; nothing in the file is executed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
from pathlib import Path
from typing import Any

# PDF page sizes are in points (1/72 inch). The PDF specification's own limit is
# 14,400 units a side (200 inches); a page beyond it, or thinner than a ribbon, is a
# bomb rather than a slide: rendered 1920 px wide, a 1:100 page would be 192,000 px high.
MAX_SIDE_PT = 14_400.0
MIN_SIDE_PT = 8.0
MAX_ASPECT = 4.0
# An image's own pixels, decoded before it is scaled: past this it is a bomb.
MAX_IMAGE_PIXELS = 100_000_000
THUMB_WIDTH = 320
JPEG_QUALITY = 85
PNG_TRY_JPEG_BYTES = 250_000


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def limit_self(memory_mb: int, cpu_s: int, file_mb: int) -> None:
    """Limits on this very process, before anything reads the file."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def render(source: Path, out: Path, kind: str, width: int, max_pages: int) -> list[dict[str, Any]]:
    # PyMuPDF 2 imports its optional page-layout analysis (an ONNX model) when it is
    # installed: a second of start-up and hundreds of MB for nothing a renderer needs.
    sys.modules.setdefault("pymupdf.layout", None)  # type: ignore[arg-type]
    # PyMuPDF has no type hints: held as Any, in this one function.
    pymupdf: Any = importlib.import_module("pymupdf")
    # MuPDF's complaints about a damaged file go to our stderr, not stdout (the answer).
    pymupdf.TOOLS.mupdf_display_errors(False)
    data = source.read_bytes()
    try:
        doc = pymupdf.open(stream=data, filetype=kind)
    except Exception:
        raise Refused("broken_file", _BROKEN[kind]) from None
    if doc.needs_pass:
        raise Refused("encrypted", "this PDF is protected by a password; save it without one")
    count = doc.page_count
    if count < 1:
        raise Refused("broken_file", _BROKEN[kind])
    if count > max_pages:
        raise Refused("too_many_pages", f"a deck may have at most {max_pages} pages, not {count}")
    # Every page's size first (cheap): a bomb is refused before any page is drawn.
    sizes = []
    for number in range(count):
        try:
            rect = doc[number].rect
        except Exception:
            raise Refused("broken_file", _BROKEN[kind]) from None
        w, h = float(rect.width), float(rect.height)
        if kind != "pdf" and (w * 96 / 72) * (h * 96 / 72) > MAX_IMAGE_PIXELS:
            raise Refused("page_too_large", "this image has too many pixels")
        if not (MIN_SIDE_PT <= w <= MAX_SIDE_PT and MIN_SIDE_PT <= h <= MAX_SIDE_PT):
            size = f"{w:.0f}x{h:.0f} points"
            raise Refused("page_too_large", f"page {number + 1} is {size}: too large for a slide")
        if max(w / h, h / w) > MAX_ASPECT:
            raise Refused("page_too_large", f"page {number + 1} is too long and thin for a slide")
        sizes.append((w, h))
    pages = []
    for number, (w, _) in enumerate(sizes):
        page = doc[number]
        try:
            zoom = width / w
            pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
            thumb_zoom = THUMB_WIDTH / w
            small = page.get_pixmap(matrix=pymupdf.Matrix(thumb_zoom, thumb_zoom), alpha=False)
        except Exception:
            why = f"page {number + 1} cannot be drawn: {_BROKEN[kind]}"
            raise Refused("broken_file", why) from None
        # Text and drawings are sharp and small as PNG; a page that is large as PNG is a
        # photograph, smaller as JPEG (tried only then: encoding costs as much as drawing).
        name, body = f"p{number + 1:03d}.png", pix.tobytes("png")
        if len(body) > PNG_TRY_JPEG_BYTES:
            jpeg = pix.tobytes("jpeg", jpg_quality=JPEG_QUALITY)
            if len(jpeg) < len(body):
                name, body = f"p{number + 1:03d}.jpg", jpeg
        (out / name).write_bytes(body)
        thumb = f"t{number + 1:03d}.jpg"
        (out / thumb).write_bytes(small.tobytes("jpeg", jpg_quality=JPEG_QUALITY))
        pages.append({"file": name, "thumb": thumb, "width": pix.width, "height": pix.height})
    return pages


_BROKEN = {
    "pdf": "this PDF is damaged and cannot be read",
    "png": "this PNG image is damaged and cannot be read",
    "jpeg": "this JPEG image is damaged and cannot be read",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deck_render")
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kind", choices=sorted(_BROKEN), required=True)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--max-pages", type=int, default=300)
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--cpu-s", type=int, default=120)
    parser.add_argument("--file-mb", type=int, default=32)
    args = parser.parse_args(argv)
    limit_self(args.memory_mb, args.cpu_s, args.file_mb)
    try:
        pages = render(args.source, args.out, args.kind, args.width, args.max_pages)
    except Refused as exc:
        print(json.dumps({"code": exc.code, "message": exc.message}))
        return 2
    except MemoryError:
        print(json.dumps({"code": "too_complex", "message": "this file needs too much memory"}))
        return 2
    print(json.dumps({"pages": pages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
