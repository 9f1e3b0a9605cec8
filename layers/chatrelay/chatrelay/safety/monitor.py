"""Checks a streamed answer piece by piece, without holding the stream back.

The relay hands the monitor each piece of text it appends to the answer; every
``piece_chars`` new characters (plus ``overlap`` characters of the previous piece,
so a phrase split across two pieces is still seen whole; at most 2500 in all) go
to the checker in a background task, one check at a time, in order. Tokens keep
flowing to the client meanwhile. When a piece is judged risky the monitor fixes a
*cut-off*: the answer's safe length in characters (code points, like the
stream's ``id:`` offsets) — the start of the refused piece, moved back to the end
of the last sentence or line before it when one is near. Everything before the
cut-off was checked and passed.

    monitor = safety.answer_monitor(user_id)
    cut = await monitor.feed(text)     # per appended delta; None, or the cut-off once known
    cut = await monitor.finish()       # at the end: checks the unchecked tail, waits for checks
    await monitor.wait_flagged()       # resolves with the cut-off (race it against the upstream)
    await monitor.aclose()             # always, in the relay's finally

Invisible characters (zero-width spaces and the like, ``text.is_ignorable``) do not count
towards the overlap: the window reaches further back until it holds ``overlap`` visible
characters (within the 2500 limit), so that a word padded with them cannot straddle two
pieces unseen. Windows, and so cut-offs, are always offsets into the answer as streamed;
a checker normalises its own copy of the text (keywords.py).

Streaming first and judging behind means the client may already have shown text
beyond the cut-off: the stream must then tell it to cut its answer there
(``event: error`` ``answer_blocked`` with the offset) and the stored answer is the
text before the cut-off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from chatrelay.observability import hash_user_id, logger
from chatrelay.safety.base import MAX_CHECK_CHARS, CheckFailed, ContentChecker
from chatrelay.text import is_ignorable

_BOUNDARIES = ("\n", "。", "！", "？", "；", "! ", "? ", ". ", "; ")
_BACKOFF = 200
"""How far back from a refused piece the cut-off may move to end on a sentence."""


def safe_cut(text: str, start: int) -> int:
    """``start``, or the end of the last sentence or line in the ``_BACKOFF`` characters before it."""
    floor = max(0, start - _BACKOFF)
    best = max((text.rfind(mark, floor, start) for mark in _BOUNDARIES), default=-1)
    return best + 1 if best >= 0 else start


class AnswerSafetyMonitor:
    def __init__(
        self,
        checker: ContentChecker,
        *,
        user_id: str,
        scene: int = 2,
        piece_chars: int = 500,
        overlap: int = 50,
        block_review: bool = False,
        fail_closed: bool = False,
    ) -> None:
        if piece_chars <= 0 or overlap < 0 or piece_chars + overlap > MAX_CHECK_CHARS:
            raise ValueError(f"piece_chars + overlap must be within 1..{MAX_CHECK_CHARS}")
        self._checker = checker
        self._user_id = user_id
        self._scene = scene
        self._piece = piece_chars
        self._overlap = overlap
        self._block_review = block_review
        self._fail_closed = fail_closed
        self._parts: list[str] = []
        self._text = ""
        self._length = 0
        self._scheduled = 0
        self._verified = 0
        self._cutoff: int | None = None
        self._queue: deque[tuple[int, int]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._flagged = asyncio.Event()
        self.checks = 0

    @property
    def cutoff(self) -> int | None:
        """The answer's safe length once a piece was refused, else None."""
        return self._cutoff

    @property
    def verified_offset(self) -> int:
        """Characters of the answer checked and passed so far."""
        return self._verified

    async def feed(self, text: str) -> int | None:
        """Append ``text`` (exactly what the relay appended to the answer).

        Never waits for a check: returns the cut-off if one is already known, else None.
        """
        if self._cutoff is None and text:
            self._parts.append(text)
            self._length += len(text)
            while self._length - self._scheduled >= self._piece:
                self._schedule(self._scheduled + self._piece)
        return self._cutoff

    async def finish(self, timeout: float = 15.0) -> int | None:
        """Check whatever is not checked yet, wait for every check; the cut-off or None.

        Checks still running after ``timeout`` seconds count as failed checks: under
        a fail-closed policy the answer is cut after the text verified so far.
        """
        if self._cutoff is None and self._scheduled < self._length:
            self._schedule(self._length)
        if self._worker is not None and not self._worker.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout)
            except TimeoutError:
                logger.warning("answer checks timed out", extra={"user": hash_user_id(self._user_id),
                                                                 "fail_closed": self._fail_closed})
                await self.aclose()
                if self._fail_closed and self._cutoff is None:
                    self._cutoff = safe_cut(self._materialize(), self._verified)
                    self._flagged.set()
        return self._cutoff

    async def wait_flagged(self) -> int:
        """Resolves with the cut-off when a piece is refused (never, if none is)."""
        await self._flagged.wait()
        assert self._cutoff is not None
        return self._cutoff

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def _materialize(self) -> str:
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text

    def _schedule(self, end: int) -> None:
        self._queue.append((self._scheduled, end))
        self._scheduled = end
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())

    def _window_start(self, text: str, begin: int, end: int) -> int:
        """Where the window for the new text ``[begin, end)`` starts: ``overlap`` visible characters
        before ``begin`` (invisible ones come along uncounted), within ``MAX_CHECK_CHARS`` of ``end``."""
        start = max(0, begin - self._overlap)
        floor = max(0, end - MAX_CHECK_CHARS)
        visible = sum(1 for char in text[start:begin] if not is_ignorable(char))
        while visible < self._overlap and start > floor:
            start -= 1
            if not is_ignorable(text[start]):
                visible += 1
        return start

    async def _work(self) -> None:
        while self._queue and self._cutoff is None:
            begin, end = self._queue.popleft()
            text = self._materialize()
            start = self._window_start(text, begin, end)
            try:
                verdict = await self._checker.check(text[start:end], user_id=self._user_id, scene=self._scene)
                blocked = verdict.blocks(block_review=self._block_review)
            except CheckFailed as exc:
                logger.warning("answer check failed", extra={"user": hash_user_id(self._user_id), "error": str(exc),
                                                             "fail_closed": self._fail_closed})
                blocked = self._fail_closed
            except Exception:
                logger.exception("answer check crashed", extra={"user": hash_user_id(self._user_id)})
                blocked = self._fail_closed
            self.checks += 1
            if blocked:
                # The refused window begins with the overlap: cut before all of it.
                self._cutoff = safe_cut(text, start)
                self._flagged.set()
                self._queue.clear()
                return
            self._verified = end
