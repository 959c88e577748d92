"""Exactly-once execution reports for the risk manager: durable sequence tracking and resync. No I/O.

The execution-engine numbers every report in its outbox (``report_seq``: increasing, never
reused) and names the one before it (``prev_seq``): a chain. The risk manager keeps the last
one it applied (``last_seq``, persisted with its state in the same transaction) and applies a
report when its ``prev_seq`` is ``last_seq``: a repeat is ignored, a link ahead of what it
holds is a gap. A link *behind* it (``prev_seq < last_seq < report_seq``) means the engine's
outbox no longer has the reports after ``prev_seq`` that were applied here: a machine crash
took the engine's unsynced tail, or the engine died between a report's publish and its
commit (reports of orders the broker holds are published first, ``execution/store.py``). Those reports were true; the engine's start-up
reconciliation reports the broker's state and cumulative fills again, which the risk engine
applies idempotently, so the chain is resumed there (``RESUMED``, counted).

A gap, a new publisher epoch (the engine restarted, or another pod answers behind the
Service), the start of this process and a periodic timer all ask for a resync: a
``SyncRequest`` "every report after ``last_seq``, and which of these open orders do you not
know". The engine replays from its outbox and answers with a ``SyncReply`` on the same
socket, so the answer arrives after the replay; a request lost on the way (a subscriber
still joining) is sent again after ``retry_s``.

A manager with no stored state (first start) asks with ``since=-1`` ("only your head"): its
positions and open orders come from the broker, which already holds everything before it;
reports arriving before that answer are applied without a sequence (``UNSYNCED``): the risk
engine moves its book only for orders it counts, and by cumulative quantity.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from tradingsystem.common.wire import SyncReply, SyncRequest


class ReportVerdict(enum.StrEnum):
    APPLY = "apply"  # the next one in sequence
    RESUMED = "resumed"  # the next one after the engine lost the tail applied here (see above)
    DUPLICATE = "duplicate"  # already applied (a replay overlapping the live stream)
    GAP = "gap"  # one or more before it are missing: not applied, resync
    # No sequence yet (first start, before the first answer): applied by the engine's own
    # rules (orders counted here only, cumulative fills), as the answer's head covers it.
    UNSYNCED = "unsynced"


class SyncTrigger(enum.StrEnum):
    START = "start"
    EPOCH = "epoch"
    GAP = "gap"
    PERIODIC = "periodic"
    MORE = "more"  # the last answer replayed a bounded batch; the rest follows


@dataclass
class Resync:
    """Report sequence and resync requests; times are monotonic seconds passed in."""

    last_seq: int | None
    interval_s: float  # periodic resync (open orders reconciled with the engine)
    retry_s: float = 1.0  # an unanswered request is sent again after this
    pending: SyncTrigger | None = SyncTrigger.START
    request_id: int = 0
    _sent_at: float | None = None
    _next_periodic: float = 0.0
    gaps: int = field(default=0)  # reports that arrived ahead of the chain
    resumed: int = field(default=0)

    def on_report(self, report_seq: int, prev_seq: int = -1) -> ReportVerdict:
        """``prev_seq`` -1: an engine from before the chain, whose sequence had no gaps."""
        if self.last_seq is None:
            return ReportVerdict.UNSYNCED
        if report_seq <= self.last_seq:
            return ReportVerdict.DUPLICATE
        prev = report_seq - 1 if prev_seq < 0 else prev_seq
        if prev > self.last_seq:
            self.gaps += 1
            self.need(SyncTrigger.GAP)
            return ReportVerdict.GAP
        verdict = ReportVerdict.APPLY if prev == self.last_seq else ReportVerdict.RESUMED
        if verdict is ReportVerdict.RESUMED:
            self.resumed += 1
        self.last_seq = report_seq
        return verdict

    def need(self, trigger: SyncTrigger) -> bool:
        """Ask for a resync; False if one is already pending (counted once)."""
        if self.pending is not None:
            return False
        self.pending = trigger
        self._sent_at = None
        return True

    def request(self, now: float, open_cids: Callable[[], list[str]]) -> SyncRequest | None:
        """The request to send now, if any (pending and not sent within ``retry_s``);
        ``open_cids`` is called only then."""
        if self.pending is None and now >= self._next_periodic and self.last_seq is not None:
            self.need(SyncTrigger.PERIODIC)
        if self.pending is None or (self._sent_at is not None and now - self._sent_at < self.retry_s):
            return None
        self._sent_at = now
        self.request_id += 1
        since = -1 if self.last_seq is None else self.last_seq
        return SyncRequest(request_id=self.request_id, since=since, open=open_cids())

    def on_reply(self, reply: SyncReply, now: float) -> None:
        """After the replayed reports were applied: done, or ask again for the rest."""
        if self.last_seq is None:
            self.last_seq = reply.head
        self.pending = None
        self._next_periodic = now + self.interval_s
        if self.last_seq < reply.head:
            self.need(SyncTrigger.MORE)


__all__ = ["ReportVerdict", "Resync", "SyncTrigger"]
