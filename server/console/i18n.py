"""The one translation catalogue of the console: Vietnamese first, English second.

Every string a page or its script shows goes through `t("key")`; tests/server/test_console_i18n.py
checks that each key used in a template or in Python exists here in both languages.
"""

from __future__ import annotations

from fastapi import Request

from server.console.catalogue import CATALOGUE

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
LANG_COOKIE = "loa_lang"
# Strings the browser scripts need (sent with each page as JSON).
JS_KEYS = (
    "js.error",
    "js.saved",
    "js.sending",
    "js.uploading",
    "js.processing",
    "js.confirm",
    "js.no_conflicts",
    "js.conflicts",
    "js.no_data",
    "js.network",
    "js.bad_date",
    "js.bad_week",
    "js.conflict_item",
    "cmd.status.sent",
    "cmd.status.ok",
    "cmd.status.failed",
    "cmd.status.no_answer",
    "cmd.offline_wait",
    "chart.temp",
    "chart.signal",
    "chart.disk",
    "live.prio.normal",
    "live.prio.priority",
    "live.prio.emergency",
    "live.mic_start",
    "live.mic_stop",
    "live.js.running",
    "live.js.ended",
    "live.js.stop",
    "live.js.listeners",
    "live.js.frames",
    "live.js.source",
    "live.js.priority",
    "live.js.started",
    "live.js.reason",
    "live.js.devices",
    "live.js.device",
    "live.js.zone",
    "live.js.status",
    "live.js.detail",
    "live.js.why.mic",
    "live.js.why.file",
    "live.js.why.pipe",
    "live.js.why.sender",
    "live.js.why.clip",
    "live.js.why.source",
    "live.js.why.server",
    "live.js.why.stopped_by",
    "live.js.why.duration",
    "live.js.why.idle",
    "live.js.why.frames",
    "live.js.why.joined",
    "live.js.why.left",
    "live.js.dev.pending",
    "live.js.dev.joined",
    "live.js.dev.refused",
    "live.js.dev.left",
    "live.js.src.mic",
    "live.js.src.url",
    "live.js.src.relay",
    "live.js.src.file",
    "live.js.pick_zone",
    "live.js.need_url",
    "live.js.need_clip",
    "live.js.no_mic",
    "live.js.mic_denied",
    "live.js.connecting",
    "live.js.on_air",
    "live.js.waiting_devices",
    "live.js.on_air_some",
    "live.js.mic_closed",
    "live.js.started_ok",
    "live.js.stopped",
    "live.js.none",
    "users.js.created",
    "users.js.saved",
    "users.js.password_reset",
)


def language_of(request: Request) -> str:
    """The language chosen with the switch (cookie), Vietnamese by default."""
    lang = request.cookies.get(LANG_COOKIE, DEFAULT_LANG)
    return lang if lang in LANGS else DEFAULT_LANG


class Translator:
    """Looks keys up in one language; `t("key", n=3)` fills {n}."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self.index = LANGS.index(self.lang)

    def __call__(self, key: str, **values: object) -> str:
        entry = CATALOGUE.get(key)
        if entry is None:
            return key  # visible in the page, and the i18n test fails on it
        text = entry[self.index]
        return text.format(**values) if values else text

    def subset(self, keys: tuple[str, ...]) -> dict[str, str]:
        """Several keys at once, for the browser."""
        return {k: self(k) for k in keys}
