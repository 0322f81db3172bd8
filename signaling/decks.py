"""Decks on disk: received, checked, rendered and kept by the SHA-256 of their file.

The one module that owns the deck format; others call it and never read the files.
Under `<data-dir>/decks/`:

- `<sha256>/deck.json`: `{"id", "name", "kind", "bytes", "pages": [{"file", "thumb",
  "width", "height"}, ...]}`, written last: a folder without it is no deck;
- `<sha256>/p001.png` (or `.jpg`), `t001.jpg`, …: the pages at the projector's width
  and their thumbnails;
- `.incoming/<random>/`: an upload being received and rendered; removed whatever
  happens, so that a refused file leaves nothing behind;
- `entries/<entry id>.json`: `{"deck_id"}`, the deck of a timetable entry, attached to
  each of its lessons as it is started.

The uploaded file itself is not kept: only the images rendered from it are served.
Rendering runs in a separate process with limits (signaling.deck_render); a refusal
is a `DeckRefused` with a status, a code and a sentence for the person who uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classroom.courseware import MAX_DECK_PAGES

log = logging.getLogger(__name__)

DECK_FILE = "deck.json"
INCOMING = ".incoming"
_ID = re.compile(r"^[0-9a-f]{64}$")
_PPT_SUFFIXES = (".ppt", ".pptx", ".odp", ".pps", ".ppsx")


@dataclass(frozen=True)
class DeckLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pages: int = MAX_DECK_PAGES
    # The projector's width: a 16:9 page is 1920x1080, sharp on a 1080p projector.
    width: int = 1920
    # The renderer process's own limits, and how long the server waits for it.
    memory_mb: int = 1024
    cpu_s: int = 120
    timeout_s: float = 180.0


class DeckRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class StoredDeck:
    deck_id: str
    name: str
    pages: list[dict[str, Any]]

    @property
    def width(self) -> int:
        return int(self.pages[0]["width"])

    @property
    def height(self) -> int:
        return int(self.pages[0]["height"])


def sniff(head: bytes, name: str) -> str | None:
    """What the file is, by its first bytes (never by its name alone)."""
    # A PDF reader accepts the header anywhere in the first 1024 bytes (ISO 32000-1, 7.5.2
    # leaves it first; readers tolerate junk before it, and so does MuPDF).
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    ole = head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
    if (head.startswith(b"PK\x03\x04") or ole) and name.lower().endswith(_PPT_SUFFIXES):
        return "slides"
    return None


class Decks:
    def __init__(self, root: Path, limits: DeckLimits | None = None) -> None:
        self.root = root
        self.limits = limits or DeckLimits()
        # One render at a time: each takes a core for seconds, and the lesson's
        # relay needs the others.
        self._rendering = asyncio.Semaphore(1)

    def get(self, deck_id: str) -> StoredDeck | None:
        if not _ID.match(deck_id):
            return None
        try:
            data = json.loads((self.root / deck_id / DECK_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return StoredDeck(data["id"], data["name"], data["pages"])

    def page_path(self, deck_id: str, page: int, thumb: bool = False) -> Path | None:
        deck = self.get(deck_id)
        if deck is None or not 1 <= page <= len(deck.pages):
            return None
        return self.root / deck_id / str(deck.pages[page - 1]["thumb" if thumb else "file"])

    def set_entry_deck(self, entry_id: str, deck_id: str) -> None:
        folder = self.root / "entries"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{entry_id}.json"
        tmp.write_text(json.dumps({"deck_id": deck_id}), encoding="utf-8")
        os.replace(tmp, folder / f"{entry_id}.json")

    def entry_deck(self, entry_id: str) -> StoredDeck | None:
        if not entry_id.isalnum():
            return None
        try:
            path = self.root / "entries" / f"{entry_id}.json"
            deck_id = json.loads(path.read_text(encoding="utf-8"))["deck_id"]
        except (OSError, ValueError, KeyError):
            return None
        return self.get(str(deck_id))

    async def receive(
        self, body: AsyncIterator[bytes], name: str, declared: int | None
    ) -> StoredDeck:
        """Read an upload to a file (never whole into memory), check and render it."""
        limit = self.limits.max_bytes
        if declared is not None and declared > limit:
            raise _too_large(limit)
        incoming = self.root / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=secrets.token_hex(4), dir=incoming))
        try:
            source = work / "source"
            digest = hashlib.sha256()
            size = 0
            head = b""
            with open(source, "wb") as out:
                async for chunk in body:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    if len(head) < 1024:
                        head += chunk[: 1024 - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise DeckRefused(422, "empty_file", "the file is empty")
            kind = sniff(head, name)
            if kind is None:
                raise DeckRefused(
                    415, "not_a_deck", "this file is not a PDF, PNG or JPEG; save it as PDF"
                )
            deck_id = digest.hexdigest()
            known = self.get(deck_id)
            if known is not None:
                return known  # the same file again: the same deck, rendered once
            if kind == "slides":
                source = await self._convert(source, work)
                kind = "pdf"
            pages_dir = work / "pages"
            pages_dir.mkdir()
            async with self._rendering:
                pages = await self._render(source, pages_dir, kind)
            data = {"id": deck_id, "name": name, "kind": kind, "bytes": size, "pages": pages}
            (pages_dir / DECK_FILE).write_text(json.dumps(data), encoding="utf-8")
            final = self.root / deck_id
            try:
                os.rename(pages_dir, final)
            except OSError:
                if self.get(deck_id) is None:  # not a concurrent upload of the same file
                    raise
            stored = self.get(deck_id)
            assert stored is not None
            return stored
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _render(self, source: Path, out: Path, kind: str) -> list[dict[str, Any]]:
        lim = self.limits
        args = [
            *("-m", "signaling.deck_render", str(source), str(out), "--kind", kind),
            *("--width", str(lim.width), "--max-pages", str(lim.max_pages)),
            *("--memory-mb", str(lim.memory_mb), "--cpu-s", str(lim.cpu_s)),
        ]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(Path(__file__).resolve().parents[1]),
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), lim.timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DeckRefused(
                422, "too_complex", "this file takes too long to draw; simplify it"
            ) from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        answer: dict[str, Any] = {}
        with contextlib.suppress(ValueError, IndexError):
            answer = json.loads(stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        if proc.returncode == 0 and isinstance(answer.get("pages"), list):
            return list(answer["pages"])
        if proc.returncode == 2 and "code" in answer:
            raise DeckRefused(422, str(answer["code"]), str(answer["message"]))
        # Killed by its limits (memory, CPU seconds, file size) or crashed on the file.
        why = stderr.decode(errors="replace")[-500:]
        log.warning("deck renderer ended with %s: %s", proc.returncode, why)
        raise DeckRefused(422, "too_complex", "this file is too complex to draw; simplify it")

    async def _convert(self, source: Path, work: Path) -> Path:
        """PowerPoint (or Impress) to PDF with LibreOffice, where the server has it."""
        soffice = shutil.which("soffice") or shutil.which("libreoffice")
        if soffice is None:
            raise DeckRefused(
                415,
                "needs_conversion",
                "this server cannot read PowerPoint files; save the slides as PDF",
            )
        # A folder of its own for LibreOffice's profile: no macros are enabled there,
        # and nothing of one conversion stays for the next.
        named = work / "slides.pptx"
        os.rename(source, named)
        profile = (work / "profile").as_uri()
        proc = await asyncio.create_subprocess_exec(
            soffice,
            f"-env:UserInstallation={profile}",
            *("--headless", "--norestore", "--convert-to", "pdf", "--outdir", str(work)),
            str(named),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={"HOME": str(work), "PATH": os.environ.get("PATH", "")},
        )
        try:
            await asyncio.wait_for(proc.wait(), self.limits.timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DeckRefused(422, "too_complex", "these slides take too long to convert") from None
        pdf = work / "slides.pdf"
        if proc.returncode != 0 or not pdf.is_file():
            raise DeckRefused(422, "broken_file", "these slides cannot be converted; save as PDF")
        return pdf


def _too_large(limit: int) -> DeckRefused:
    return DeckRefused(413, "too_large", f"a deck may be at most {limit // (1024 * 1024)} MB")
