"""The desired state a device holds, kept in a small JSON file that is replaced atomically."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class HeldState(BaseModel):
    """What the device currently holds; state_version never goes backwards."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    state_version: int | None = Field(default=None, ge=1)
    volume: int = Field(ge=0, le=100)
    muted: bool = False
    telemetry_interval_s: float | None = Field(default=None, ge=1, le=3600)
    schedule_version: int | None = Field(default=None, ge=1)
    zone_ids: tuple[int, ...] = ()  # whose clip topics to read, from the desired state


class StateStore:
    """Loads and saves HeldState under the agent's data directory."""

    def __init__(self, *, data_dir: Path) -> None:
        self.path = data_dir / STATE_FILE

    def load(self, *, default_volume: int) -> HeldState:
        """The saved state, or a fresh one when there is none or it is unreadable (logged)."""
        fresh = HeldState(volume=default_volume)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return fresh
        except (OSError, UnicodeDecodeError) as exc:
            log.error("cannot read %s (%s); starting with no desired state held", self.path, exc)
            return fresh
        try:
            return HeldState.model_validate_json(text)
        except ValidationError as exc:
            # Only a damaged disk or a hand edit gets here (saves are atomic). Starting
            # fresh is safe: the broker's retained desired state is always the newest.
            log.error(
                "%s is damaged (%s); starting with no desired state held — the server's "
                "retained desired state will be applied again",
                self.path,
                exc.errors()[0]["msg"],
            )
            return fresh

    def save(self, held: HeldState) -> None:
        """Write held atomically (temp file, fsync, rename); raise OSError when the disk fails."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{STATE_FILE}.", suffix=".tmp"
        )
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(held.model_dump_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable across a power cut (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
