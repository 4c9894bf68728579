"""What a console page shows a reader: visible text and labels, and the English in it.

No tests live here; test_console_vietnamese.py (and the browser tests) import it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from server.console.catalogue import CATALOGUE
from server.seed import COMMUNES, DEMO_USERS, PROVINCE

# Attributes a reader sees or hears (data-label is shown as the column name on a phone).
SHOWN_ATTRS = ("title", "placeholder", "aria-label", "alt", "data-label", "value")
# Words that are the same in Vietnamese text: names, units, formats.
ALLOWED = {
    "loa", "admin", "mic", "url", "http", "https", "csv", "xlsx", "json", "api", "mqtt",
    "mp3", "wav", "ogg", "opus", "m4a", "lufs", "dbtp", "db", "dbm", "kbps", "ms",
    "cpu", "ip", "gpio", "alsa", "tts", "id", "sha", "pi", "raspberry", "sim", "vi", "en",
}  # fmt: skip
WORD = re.compile(r"[^\W\d_]+")
# Letters and digits together: "bao-ninh-01" is three runs, "live:1ad973bb601a" two.
RUN = re.compile(r"[^\W_]+")


# Elements whose text a reader does not get as console words: code, and device-reported
# technical detail (<code class="tech">, the English a device or ffmpeg wrote).
SKIPPED = ("script", "style", "template", "code")


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self._skip += 1
        shown_button = tag == "input" and any(
            a in attrs for a in (("type", "submit"), ("type", "button"))
        )
        for name, value in attrs:
            if value and name in SHOWN_ATTRS and (name != "value" or shown_button):
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The text and the labels a reader of the page sees, one piece a line."""
    parser = _Visible()
    parser.feed(html)
    return "\n".join(p.strip() for p in parser.parts if p.strip())


def vietnamese_vocabulary(extra: tuple[str, ...] = ()) -> set[str]:
    """Words written without diacritics that are Vietnamese here: catalogue, demo names."""
    texts = [vi for vi, _ in CATALOGUE.values()]
    texts += [PROVINCE, *COMMUNES, *(slug for slug, _ in COMMUNES.values())]
    texts += [v for _, villages in COMMUNES.values() for v in villages]
    texts += [part for user in DEMO_USERS for part in (user[0], user[2], user[4])]
    texts += list(extra)
    return {w.lower() for text in texts for w in WORD.findall(text)}


def english_words(text: str, *, vocabulary: set[str]) -> list[str]:
    """ASCII words that are neither Vietnamese here nor on the allow-list."""
    found = []
    for run in RUN.findall(text):
        if any(ch.isdigit() for ch in run) or not run.isascii() or len(run) < 2:
            continue  # numbers and codes are not words; Vietnamese letters are Vietnamese
        if run.lower() not in vocabulary and run.lower() not in ALLOWED:
            found.append(run)
    return found
