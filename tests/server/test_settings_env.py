"""Settings read from the environment, as an operator sets them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.settings import ServerSettings


def test_live_frame_length_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOA_LIVE_FRAME_MS", "40")
    assert ServerSettings().live_frame_ms == 40
    monkeypatch.setenv("LOA_LIVE_FRAME_MS", " 20 ")
    assert ServerSettings().live_frame_ms == 20


@pytest.mark.parametrize("text", ["30", "forty", ""])
def test_a_live_frame_length_other_than_20_or_40_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("LOA_LIVE_FRAME_MS", text)
    with pytest.raises(ValidationError, match="live_frame_ms"):
        ServerSettings()
