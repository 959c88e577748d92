"""Exactly-once reports by durable sequence, and when a resync is asked for."""

from __future__ import annotations

from tradingsystem.common.wire import SyncReply
from tradingsystem.risk.resync import ReportVerdict, Resync, SyncTrigger


def synced(last: int = 5) -> Resync:
    r = Resync(last, interval_s=5.0)
    req = r.request(0.0, list)
    assert req is not None and req.since == last
    r.on_reply(SyncReply(request_id=req.request_id, head=last, replayed_to=last), 0.0)
    assert r.pending is None
    return r


def test_reports_apply_once_in_order() -> None:
    r = synced(5)
    assert r.on_report(6) is ReportVerdict.APPLY
    assert r.on_report(6) is ReportVerdict.DUPLICATE
    assert r.on_report(3) is ReportVerdict.DUPLICATE
    assert r.last_seq == 6


def test_a_gap_is_not_applied_and_asks_for_the_missing_reports() -> None:
    r = synced(5)
    assert r.on_report(9) is ReportVerdict.GAP
    assert (r.last_seq, r.pending, r.gaps) == (5, SyncTrigger.GAP, 1)
    req = r.request(1.0, lambda: ["a"])
    assert req is not None and (req.since, req.open) == (5, ["a"])


def test_a_report_chained_to_the_last_one_applies_across_an_engine_restart() -> None:
    r = synced(5)
    next_generation = 2 << 32
    assert r.on_report(next_generation, prev_seq=5) is ReportVerdict.APPLY
    assert r.on_report(next_generation + 1, prev_seq=next_generation) is ReportVerdict.APPLY
    assert r.last_seq == next_generation + 1


def test_a_report_chained_ahead_of_the_last_one_is_a_gap() -> None:
    r = synced(5)
    assert r.on_report(2 << 32, prev_seq=7) is ReportVerdict.GAP
    assert (r.last_seq, r.pending) == (5, SyncTrigger.GAP)


def test_a_chain_resumed_below_the_last_one_is_the_engines_lost_tail_and_applies() -> None:
    r = synced(5)  # 4 and 5 were applied here, then lost by the engine's machine crash
    assert r.on_report(2 << 32, prev_seq=3) is ReportVerdict.RESUMED
    assert (r.last_seq, r.pending, r.resumed) == (2 << 32, None, 1)
    assert r.on_report(4, prev_seq=3) is ReportVerdict.DUPLICATE


def test_an_unanswered_request_is_sent_again_after_the_retry_interval() -> None:
    r = Resync(5, interval_s=5.0, retry_s=1.0)
    first = r.request(0.0, list)
    assert first is not None
    assert r.request(0.5, list) is None
    again = r.request(1.0, list)
    assert again is not None and again.request_id == first.request_id + 1


def test_a_bounded_replay_asks_again_for_the_rest() -> None:
    r = Resync(0, interval_s=5.0)
    req = r.request(0.0, list)
    assert req is not None
    for seq in range(1, 501):
        assert r.on_report(seq) is ReportVerdict.APPLY
    r.on_reply(SyncReply(request_id=req.request_id, head=800, replayed_to=500), 0.0)
    assert r.pending is SyncTrigger.MORE


def test_a_first_start_takes_only_the_head_and_applies_nothing_before_it() -> None:
    r = Resync(None, interval_s=5.0)
    assert r.on_report(3) is ReportVerdict.UNSYNCED
    req = r.request(0.0, list)
    assert req is not None and req.since == -1
    r.on_reply(SyncReply(request_id=req.request_id, head=42, replayed_to=42), 0.0)
    assert (r.last_seq, r.pending) == (42, None)
    assert r.on_report(43) is ReportVerdict.APPLY


def test_a_periodic_resync_follows_the_interval_and_an_epoch_change_forces_one() -> None:
    r = synced(5)
    assert r.request(4.9, list) is None
    assert r.request(5.0, list) is not None and r.pending is SyncTrigger.PERIODIC
    r.on_reply(SyncReply(request_id=r.request_id, head=5, replayed_to=5), 5.0)
    assert r.need(SyncTrigger.EPOCH)
    assert not r.need(SyncTrigger.GAP)  # one pending resync covers both
    assert r.request(5.1, list) is not None
