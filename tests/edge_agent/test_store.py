"""The held desired state survives restarts and never leaves half-written files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from edge_agent.store import STATE_FILE, HeldState, StateStore


def test_round_trip_and_no_temp_files(tmp_path: Path) -> None:
    store = StateStore(data_dir=tmp_path / "agent")
    assert store.load(default_volume=70) == HeldState(volume=70)
    held = HeldState(state_version=7, volume=42, muted=True, telemetry_interval_s=60)
    store.save(held)
    store.save(held.model_copy(update={"state_version": 8}))
    assert store.load(default_volume=70).state_version == 8
    assert os.listdir(tmp_path / "agent") == [STATE_FILE]


@pytest.mark.parametrize(
    "content",
    ["", "{not json", '{"state_version": "seven", "volume": 40}', '{"volume": 400}', "[]"],
)
def test_a_damaged_file_starts_fresh_and_says_so(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STATE_FILE).write_text(content)
    store = StateStore(data_dir=tmp_path)
    with caplog.at_level(logging.ERROR):
        assert store.load(default_volume=55) == HeldState(volume=55)
    assert "damaged" in caplog.text and str(tmp_path / STATE_FILE) in caplog.text


def test_a_failed_save_leaves_no_temp_file(tmp_path: Path) -> None:
    store = StateStore(data_dir=tmp_path)
    (tmp_path / STATE_FILE).mkdir()  # the rename onto it fails, even for root
    with pytest.raises(OSError):
        store.save(HeldState(state_version=2, volume=20))
    assert os.listdir(tmp_path) == [STATE_FILE]
    assert (tmp_path / STATE_FILE).is_dir()
