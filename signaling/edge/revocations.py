"""Edge tokens revoked before they expire, kept in the origin's data directory.

An edge token is signed, not stored: the origin cannot forget one it made. What it
keeps is, per edge name, the moment its tokens were revoked (`classroom edge-token
--revoke NAME`); a token of that edge issued at or before that moment is refused at
its hello, and a link opened with one is closed (signaling.edge.origin watches the
file while the link is open: the command runs in its own process). A token made
afterwards for the same edge is good again. One small JSON file, written whole and
renamed into place, read again only when it changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE = "edges-revoked.json"


class Revocations:
    """Which edges' tokens were revoked, and when (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, dict[str, float]] | None = None

    def revoke(self, edge: str, at: float) -> None:
        """Refuse every token of `edge` issued at or before `at` (seconds since the epoch)."""
        revoked = dict(self._read())
        revoked[edge] = max(at, revoked.get(edge, at))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(revoked, indent=1, sort_keys=True))
        os.replace(partial, self.path)

    def revoked_at(self, edge: str) -> float | None:
        return self._read().get(edge)

    def refuses(self, edge: str, issued_at: float) -> bool:
        """Whether a token of `edge` issued at `issued_at` was revoked since. Token times
        are whole seconds: one made in the second of its edge's revocation is refused
        too (`classroom edge-token` waits that second out)."""
        at = self.revoked_at(edge)
        return at is not None and issued_at <= at

    def _read(self) -> dict[str, float]:
        try:
            changed = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._seen is None or self._seen[0] != changed:
            data = json.loads(self.path.read_text())
            self._seen = changed, {str(k): float(v) for k, v in dict(data).items()}
        return self._seen[1]
