"""The server sizes an automatic playout delay from the round trips devices report."""

from __future__ import annotations

from server.live.delay import MAX_AUTO_MS, MIN_AUTO_MS, UNKNOWN_LINK_MS, choose_playout_delay


def test_the_slowest_link_decides_and_the_answer_says_why() -> None:
    choice = choose_playout_delay([("lan-1", 3.0), ("cell-7", 318.9), ("cell-2", 240.0)])
    assert choice.delay_ms == 750  # 2 × 318.9 + 100 = 737.8, rounded up to 50 ms
    assert "cell-7" in choice.basis and "319" in choice.basis and "750 ms" in choice.basis


def test_a_lan_gets_the_floor_and_a_dead_cell_the_ceiling() -> None:
    assert choose_playout_delay([("lan", 1.2)]).delay_ms == MIN_AUTO_MS
    assert choose_playout_delay([("stalled", 60_000.0)]).delay_ms == MAX_AUTO_MS


def test_devices_that_never_reported_fall_back_to_the_old_default() -> None:
    choice = choose_playout_delay([("new-1", None), ("new-2", None)])
    assert choice.delay_ms == UNKNOWN_LINK_MS and "no device" in choice.basis
    assert choose_playout_delay([]).delay_ms == UNKNOWN_LINK_MS
    # One report is enough: the silent devices do not hold the delay at the default.
    assert choose_playout_delay([("new-1", None), ("cell", 150.0)]).delay_ms == 400


def test_a_stall_a_device_probed_through_is_covered_by_the_delay() -> None:
    # A 4G hand-over: p95 round trips of 280 ms, but one probe waited out a 3 s stall.
    reports = [("cell-1", 280.0), ("cell-2", 250.0)]
    longest = [("cell-1", 900.0), ("cell-2", 3_240.0)]
    choice = choose_playout_delay(reports, longest)
    assert choice.delay_ms == 3_350  # 3240 + 100, rounded up to 50 ms
    assert "cell-2" in choice.basis and "3240" in choice.basis and "stall" in choice.basis
    # Without a stall beyond the jitter rule's figure, the p95 rule decides as before.
    assert choose_playout_delay(reports, [("cell-1", 500.0)]).delay_ms == 700
    assert choose_playout_delay(reports, [("cell-1", None)]).delay_ms == 700
    # Never beyond the API's bound, however long the stall.
    assert choose_playout_delay(reports, [("cell-1", 60_000.0)]).delay_ms == MAX_AUTO_MS
