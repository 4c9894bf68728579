"""CAP 1.2 in: DTDs, entity bombs and XXE refused, and no file read."""

from __future__ import annotations

import re
import sys
import time
import xml.sax
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from server.cap.alert import CapError
from server.cap.parse import parse_alert
from tests.server.cap.samples import TYPHOON

DTD_REFUSED = "The XML declares a DTD or entities, which are not accepted."


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE alert [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>
"""


def test_the_billion_laughs_is_refused_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(CapError) as caught:
        parse_alert(BILLION_LAUGHS)
    assert caught.value.detail == DTD_REFUSED
    assert time.monotonic() - started < 1.0  # expanded, it would be 3 GB of "lol"


def test_a_bare_doctype_is_refused() -> None:
    with pytest.raises(CapError, match=re.escape(DTD_REFUSED)):
        parse_alert(b"<!DOCTYPE alert>" + TYPHOON.split("?>", 1)[1].encode())


# Every file this process opens while `_watching` holds a list (audit hooks cannot be removed,
# so the hook stays and records nothing outside the tests that arm it).
_watching: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching and event == "open":
        _watching[-1].append(str(args[0]))


sys.addaudithook(_audit)


@contextmanager
def _opened_files() -> Iterator[list[str]]:
    opened: list[str] = []
    _watching.append(opened)
    try:
        yield opened
    finally:
        _watching.pop()


class _Text(xml.sax.ContentHandler):
    """Collects the character data a SAX parser reports."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []

    def characters(self, content: str) -> None:
        self.text.append(content)


def _xxe(secret: Path) -> bytes:
    body = TYPHOON.split("?>", 1)[1].replace("<headline>", "<headline>&xxe;", 1)
    doctype = f'<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file://{secret}">]>'
    return f'<?xml version="1.0" encoding="UTF-8"?>{doctype}{body}'.encode()


def test_an_xxe_payload_is_refused_and_reads_no_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("mật khẩu")
    with _opened_files() as opened, pytest.raises(CapError) as caught:
        parse_alert(_xxe(secret))
    assert caught.value.detail == DTD_REFUSED
    assert str(secret) not in opened


def test_the_file_watcher_sees_a_parser_that_does_read_the_entity(tmp_path: Path) -> None:
    """Without this, 'reads no file' above could pass with a watcher that sees nothing."""
    secret = tmp_path / "secret.txt"
    secret.write_text("mật khẩu")
    parser = xml.sax.make_parser()
    parser.setFeature(xml.sax.handler.feature_external_ges, True)
    handler = _Text()
    parser.setContentHandler(handler)
    with _opened_files() as opened:
        parser.parse(BytesIO(_xxe(secret)))
    assert "mật khẩu" in "".join(handler.text)
    assert any(str(secret) in path for path in opened), opened


def test_an_external_dtd_is_refused_without_a_fetch() -> None:
    payload = (
        b'<!DOCTYPE alert SYSTEM "http://203.0.113.9/evil.dtd">'
        + TYPHOON.split("?>", 1)[1].encode()
    )
    with _opened_files() as opened, pytest.raises(CapError, match=re.escape(DTD_REFUSED)):
        parse_alert(payload)
    assert opened == []
