"""The CAP feeds to poll (LOA_CAP_FEEDS): "SOURCE_ID=URL" entries, checked at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_FEEDS = 50
URL_CHARS = 2000


@dataclass(frozen=True)
class FeedConf:
    """One feed and the source whose key its alerts are taken in with."""

    source_id: int
    url: str


def parse_feeds(value: str) -> list[FeedConf]:
    """The feeds of the setting, or ValueError naming the entry that is wrong."""
    feeds: list[FeedConf] = []
    for entry in value.replace(",", " ").split():
        source, sep, url = entry.partition("=")
        if not sep or not source.isdigit() or int(source) < 1:
            raise ValueError(
                f"LOA_CAP_FEEDS entry {entry[:80]!r} is not SOURCE_ID=URL (e.g. "
                "12=https://canhbao.example.vn/cap.atom)"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > URL_CHARS:
            raise ValueError(f"LOA_CAP_FEEDS entry {entry[:80]!r}: the URL must be http(s)")
        feed = FeedConf(int(source), url)
        if feed in feeds:
            raise ValueError(f"LOA_CAP_FEEDS lists {url[:80]!r} twice for source {source}")
        feeds.append(feed)
    if len(feeds) > MAX_FEEDS:
        raise ValueError(f"LOA_CAP_FEEDS lists {len(feeds)} feeds; at most {MAX_FEEDS}")
    return feeds
