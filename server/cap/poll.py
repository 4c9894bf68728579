"""CAP feeds in (LOA_CAP_FEEDS): the planner polls each Atom feed and takes in its alerts.

Each alert goes through the same intake as POST /api/v1/cap, as the feed's configured
source (its org unit and level limits apply), so a repeat of (sender, identifier) is
harmless. Blocking (HTTP, TTS): the planner's scheduler thread runs it. A feed that fails is
logged in one line a technician can act on and counted; it never stops the job.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin
from xml.etree.ElementTree import Element, ParseError, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from sqlalchemy.orm import Session, sessionmaker

from server.access.actor import Actor, load_actor
from server.cap import intake
from server.cap.alert import NS
from server.cap.feedlist import FeedConf, parse_feeds
from server.cap.resource import FetchFailed, fetch_bytes
from server.cap.schemas import CAP_TYPES
from server.db import session_scope
from server.domain import DomainError
from server.live.urlguard import AllowList, Resolver, system_resolve
from server.settings import ServerSettings
from server.sources.models import Source
from server.users.models import User

log = logging.getLogger(__name__)
ATOM = "http://www.w3.org/2005/Atom"
FEED_MAX_BYTES = 2_000_000
FEED_DEADLINE_S = 30.0
MAX_ENTRIES = 100  # per poll: a feed of thousands is cut, the newest kept


@dataclass
class FeedPoll:
    """What one poll of one feed did."""

    taken: int = 0  # new alerts (a bulletin, a cancel, a test, a logged message)
    repeats: int = 0  # alerts taken in before: nothing new done
    refused: int = 0  # alerts the intake or the fetch refused (each logged)


def alert_documents(feed: bytes, *, base: str) -> list[bytes | str]:
    """The alerts an Atom feed carries, oldest first: inline <alert>s, else links to fetch."""
    try:
        root = fromstring(feed, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise FetchFailed("the feed declares a DTD or entities; refused") from None
    except (ParseError, LookupError) as exc:
        raise FetchFailed(f"the feed is not well-formed XML: {exc}") from None
    if root.tag != f"{{{ATOM}}}feed":
        raise FetchFailed(f"the document is not an Atom feed (its root is {root.tag[-60:]})")
    found: list[bytes | str] = []
    for entry in root.findall(f"{{{ATOM}}}entry")[:MAX_ENTRIES]:
        inline = entry.find(f"{{{ATOM}}}content/{{{NS}}}alert")
        link = _cap_link(entry)
        if inline is not None:
            found.append(tostring(inline, encoding="utf-8"))
        elif link is not None:
            found.append(urljoin(base, link))
    found.reverse()  # feeds list the newest first; an Update must follow what it replaces
    return found


def _cap_link(entry: Element) -> str | None:
    """The entry's link to its CAP document: one typed as CAP, else the alternate link."""
    links = [link for link in entry.findall(f"{{{ATOM}}}link") if link.get("href")]
    for link in links:
        if (link.get("type") or "").lower() in CAP_TYPES:
            return link.get("href")
    for link in links:
        if link.get("rel", "alternate") == "alternate":
            return link.get("href")
    return None


def source_actor(db: Session, *, source_id: int) -> Actor:
    """The source's service user, as its key would sign in; FetchFailed when it may not send."""
    source = db.get(Source, source_id)
    if source is None:
        raise FetchFailed(f"source {source_id} is not registered (check LOA_CAP_FEEDS)")
    user = db.get(User, source.user_id)
    if source.revoked_at is not None or user is None or not user.is_active:
        raise FetchFailed(f"source {source_id} ({source.name}) is revoked or disabled")
    return load_actor(db, user=user, ip="cap-feed", via_cookie=False)


class FeedPoller:
    """Polls the configured feeds; counts polls and failures per feed (source and URL)."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        settings: ServerSettings,
        clock: Callable[[], datetime],
        resolve: Resolver = system_resolve,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.clock = clock
        self.resolve = resolve
        self.feeds = parse_feeds(settings.cap_feeds)
        self.interval_s = settings.cap_feed_interval_s
        self.polls: Counter[FeedConf] = Counter()
        self.failures: Counter[FeedConf] = Counter()

    def poll_all(self) -> None:
        """Poll every feed once; a failing feed is logged and counted, the others still run."""
        for feed in self.feeds:
            self.polls[feed] += 1
            try:
                done = self.poll(feed)
            except Exception as exc:  # whatever it is, the next feed and the next run go on
                self.failures[feed] += 1
                log.warning(
                    "CAP feed %s (source %d) failed (%d of %d polls): %s",
                    feed.url, feed.source_id, self.failures[feed], self.polls[feed],
                    _why(exc),
                )  # fmt: skip
                continue
            if done.taken or done.refused:
                log.info(
                    "CAP feed %s: %d new alert(s), %d repeat(s), %d refused",
                    feed.url, done.taken, done.repeats, done.refused,
                )  # fmt: skip

    def poll(self, feed: FeedConf) -> FeedPoll:
        """Fetch one feed and take in each alert it carries (FetchFailed for the feed itself)."""
        with session_scope(self.session_factory) as db:
            source_actor(db, source_id=feed.source_id)  # before any fetch: may it send at all?
        allow = AllowList.parse(self.settings.cap_resource_allowed_hosts)
        document = fetch_bytes(
            feed.url,
            allow=allow,
            max_bytes=FEED_MAX_BYTES,
            resolve=self.resolve,
            deadline_s=FEED_DEADLINE_S,
        )
        done = FeedPoll()
        for item in alert_documents(document, base=feed.url):
            try:
                if isinstance(item, str):
                    item = fetch_bytes(
                        item,
                        allow=allow,
                        max_bytes=self.settings.cap_max_bytes,
                        resolve=self.resolve,
                        deadline_s=FEED_DEADLINE_S,
                    )
                repeat = self._take_in(feed, item)
            except (DomainError, FetchFailed) as exc:
                done.refused += 1
                log.warning("CAP feed %s: an alert was refused: %s", feed.url, _why(exc))
                continue
            if repeat:
                done.repeats += 1
            else:
                done.taken += 1
        return done

    def _take_in(self, feed: FeedConf, data: bytes) -> bool:
        """One alert through the intake, committed on its own; True for a repeat."""
        with session_scope(self.session_factory) as db:
            actor = source_actor(db, source_id=feed.source_id)
            receipt = intake.receive(
                db,
                actor=actor,
                data=data,
                settings=self.settings,
                clock=self.clock,
                resolve=self.resolve,
            )
            return receipt.repeat


def _why(exc: Exception) -> str:
    if isinstance(exc, DomainError):
        return f"HTTP {exc.status}: {exc.detail}"[:500]
    return (str(exc) or type(exc).__name__)[:500]
