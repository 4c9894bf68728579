"""A programme's content: clips and relays in playing order, read, checked and stored.

Input items are dicts as the API parses them ({"kind": "clip" | "tts" | "relay", ...});
TTS items become clips (speak_items) before the checks, so only clips and relays are stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import (
    DEFAULT_FALLBACK_AFTER_S,
    DEFAULT_RELAY_DELAY_MS,
    MAX_RELAY_S,
    ClipRef,
    RelaySpec,
)
from server.access.actor import Actor
from server.clips.models import Clip
from server.domain import DomainError
from server.orgs.tree import ancestor_ids
from server.programmes.models import FINISHED, Programme, ProgrammeClip, ProgrammeRelay
from server.relay.models import RelaySource
from server.settings import ServerSettings


@dataclass(frozen=True)
class RelayTiming:
    """How devices play relays: playout delay and silence before the fallback clip."""

    delay_ms: int = DEFAULT_RELAY_DELAY_MS
    fallback_after_s: float = DEFAULT_FALLBACK_AFTER_S

    @classmethod
    def from_settings(cls, settings: ServerSettings | None) -> RelayTiming:
        """LOA_RELAY_PLAYOUT_DELAY_MS and LOA_RELAY_FALLBACK_AFTER_S (defaults without settings)."""
        if settings is None:
            return cls()
        return cls(settings.relay_playout_delay_ms, settings.relay_fallback_after_s)


@dataclass(frozen=True)
class RelayEntry:
    """A checked relay: an enabled source within reach, a length and a fallback clip."""

    source: RelaySource
    duration_s: float
    fallback: Clip


@dataclass(frozen=True)
class Item:
    """One checked item: exactly one of clip and relay is set."""

    clip: Clip | None = None
    relay: RelayEntry | None = None


def stored(programme: Programme) -> list[ProgrammeClip | ProgrammeRelay]:
    """A programme's clip and relay rows merged in playing order (their shared positions)."""
    rows: list[ProgrammeClip | ProgrammeRelay] = [*programme.clips, *programme.relays]
    return sorted(rows, key=lambda row: row.position)


def as_input(programme: Programme) -> list[dict[str, Any]]:
    """A stored programme's content in the API's input form (an update starts from it)."""
    out: list[dict[str, Any]] = []
    for row in stored(programme):
        if isinstance(row, ProgrammeClip):
            out.append({"kind": "clip", "clip_id": row.clip_id})
        else:
            out.append(
                {
                    "kind": "relay",
                    "relay_source_id": row.relay_source_id,
                    "duration_s": row.duration_s,
                    "fallback_clip_id": row.fallback_clip_id,
                }
            )
    return out


def requested(fields: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The items the fields ask for (clip_ids as clip items); None when they give neither."""
    clip_ids, items = fields.get("clip_ids"), fields.get("items")
    if clip_ids is not None and items is not None:
        raise DomainError(
            422, "Give either clip_ids or items, not both (items may hold clips, TTS and relays)."
        )
    if items is not None:
        return [dict(item) for item in items]
    if clip_ids is not None:
        return [{"kind": "clip", "clip_id": c} for c in clip_ids]
    return None


def clip_ids_of(items: Iterable[Mapping[str, Any]]) -> list[int]:
    """Every clip id the items name, fallbacks included (for the caller's reach check)."""
    out: list[int] = []
    for item in items:
        if item.get("kind") == "clip":
            out.append(int(item["clip_id"]))
        elif item.get("kind") == "relay":
            out.append(int(item["fallback_clip_id"]))
    return out


def speak_items(
    db: Session,
    *,
    actor: Actor,
    settings: ServerSettings | None,
    items: Sequence[Mapping[str, Any]],
    org_unit_id: int | None,
    title: str,
) -> list[dict[str, Any]]:
    """The items with each TTS text replaced by the clip it is spoken into (blocking)."""
    # Imported here: clips.service reaches back into programmes for its delete guard.
    from server.clips.service import speak_into_clip

    out: list[dict[str, Any]] = []
    for item in items:
        if item.get("kind") != "tts":
            out.append(dict(item))
            continue
        if settings is None:
            raise DomainError(503, "Text-to-speech is not available here; give clips instead.")
        text = str(item["text"])
        clip = speak_into_clip(
            db, actor=actor, settings=settings, text=text, voice=str(item.get("voice") or "vi"),
            title=(" ".join(text.split())[:80] or title)[:300], org_unit_id=org_unit_id,
            details={"programme_title": title[:300]},
        )  # fmt: skip
        out.append({"kind": "clip", "clip_id": clip.id})
    return out


def _unknown_sources(ids: Iterable[int]) -> DomainError:
    # One answer for missing, disabled and foreign sources: never reveal another unit's list.
    return DomainError(422, f"Unknown relay source id(s): {', '.join(map(str, sorted(ids)))}.")


def _sources(db: Session, ids: set[int], org_unit_id: int) -> dict[int, RelaySource]:
    """Enabled sources owned by the programme's org unit or a unit above it."""
    if not ids:
        return {}
    above = set(ancestor_ids(db, org_unit_id=org_unit_id))
    rows = db.scalars(select(RelaySource).where(RelaySource.id.in_(ids)))
    found = {r.id: r for r in rows if r.enabled and r.org_unit_id in above}
    if ids - found.keys():
        raise _unknown_sources(ids - found.keys())
    return found


def load(db: Session, *, items: Sequence[Mapping[str, Any]], org_unit_id: int) -> list[Item]:
    """The items checked against the database, in order; 422 saying what is wrong."""
    if not items:
        raise DomainError(422, "Choose at least one clip or relay to play (items is empty).")
    kinds = {str(item.get("kind")) for item in items} - {"clip", "relay"}
    if kinds:
        raise DomainError(422, f"Unknown item kind(s) here: {', '.join(sorted(kinds))}.")
    clip_ids = set(clip_ids_of(items))
    clips = {c.id: c for c in db.scalars(select(Clip).where(Clip.id.in_(clip_ids)))}
    missing = sorted(clip_ids - clips.keys())
    if missing:
        raise DomainError(422, f"Unknown clip id(s): {', '.join(map(str, missing))}.")
    wanted = {int(i["relay_source_id"]) for i in items if i.get("kind") == "relay"}
    sources = _sources(db, wanted, org_unit_id)
    out: list[Item] = []
    for item in items:
        if item["kind"] == "clip":
            out.append(Item(clip=clips[int(item["clip_id"])]))
            continue
        duration = float(item["duration_s"])
        if not 0 < duration <= MAX_RELAY_S:  # also NaN
            raise DomainError(422, "A relay lasts more than 0 seconds and at most 4 hours.")
        out.append(Item(relay=RelayEntry(sources[int(item["relay_source_id"])], duration,
                                          clips[int(item["fallback_clip_id"])])))  # fmt: skip
    return out


def clip_ref(clip: Clip) -> ClipRef:
    """The schedule's view of a clip."""
    return ClipRef(sha256=clip.sha256, duration_s=clip.duration_s, size_bytes=clip.size_bytes)


def _relay_spec(
    before_clip: int, source: RelaySource, duration_s: float, fallback: Clip, timing: RelayTiming
) -> RelaySpec:
    return RelaySpec(
        before_clip=before_clip, source_id=source.id, source_name=source.name,
        duration_s=duration_s, fallback=clip_ref(fallback), playout_delay_ms=timing.delay_ms,
        fallback_after_s=timing.fallback_after_s,
    )  # fmt: skip


def spec_parts(
    items: Sequence[Item], timing: RelayTiming
) -> tuple[tuple[ClipRef, ...], tuple[RelaySpec, ...]]:
    """ProgrammeSpec.items and .relays: each relay placed before the clips that follow it."""
    clips: list[ClipRef] = []
    relays: list[RelaySpec] = []
    for item in items:
        if item.clip is not None:
            clips.append(clip_ref(item.clip))
        elif item.relay is not None:
            r = item.relay
            relays.append(_relay_spec(len(clips), r.source, r.duration_s, r.fallback, timing))
    return tuple(clips), tuple(relays)


def stored_parts(
    programme: Programme, timing: RelayTiming
) -> tuple[tuple[ClipRef, ...], tuple[RelaySpec, ...]]:
    """spec_parts of a stored programme."""
    items = [
        Item(clip=row.clip)
        if isinstance(row, ProgrammeClip)
        else Item(relay=RelayEntry(row.source, row.duration_s, row.fallback))
        for row in stored(programme)
    ]
    return spec_parts(items, timing)


def apply(programme: Programme, items: Sequence[Item]) -> None:
    """Replace the programme's content: one shared position sequence over clips and relays."""
    clips: list[ProgrammeClip] = []
    relays: list[ProgrammeRelay] = []
    for position, item in enumerate(items):
        if item.clip is not None:
            clips.append(ProgrammeClip(position=position, clip_id=item.clip.id))
        elif item.relay is not None:
            relays.append(
                ProgrammeRelay(
                    position=position, relay_source_id=item.relay.source.id,
                    duration_s=item.relay.duration_s, fallback_clip_id=item.relay.fallback.id,
                )
            )  # fmt: skip
    programme.clips = clips
    programme.relays = relays


def duration_s(programme: Programme) -> float:
    """One playback's length: clips and relays."""
    return sum(
        row.clip.duration_s if isinstance(row, ProgrammeClip) else row.duration_s
        for row in stored(programme)
    )


def programmes_using_clip(db: Session, *, clip_id: int) -> list[str]:
    """Titles of unfinished programmes that play the clip or keep it as a relay fallback."""
    played = select(ProgrammeClip.programme_id).where(ProgrammeClip.clip_id == clip_id)
    fallback = select(ProgrammeRelay.programme_id).where(ProgrammeRelay.fallback_clip_id == clip_id)
    return _unfinished_titles(db, played.union(fallback))


def programmes_using_relay_source(db: Session, *, relay_source_id: int) -> list[str]:
    """Titles of unfinished programmes that relay the source."""
    query = select(ProgrammeRelay.programme_id).where(
        ProgrammeRelay.relay_source_id == relay_source_id
    )
    return _unfinished_titles(db, query)


def _unfinished_titles(db: Session, programme_ids: Any) -> list[str]:
    query = (
        select(Programme.title)
        .where(Programme.id.in_(programme_ids), Programme.status.not_in(FINISHED))
        .order_by(Programme.id)
    )
    return list(db.scalars(query))


def quoted(titles: Sequence[str], limit: int = 5) -> str:
    """'A', 'B' (and 3 more): programme titles for a 409."""
    shown = ", ".join(repr(t) for t in titles[:limit])
    return shown + (f" (and {len(titles) - limit} more)" if len(titles) > limit else "")
