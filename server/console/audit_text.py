"""Audit entries in the reader's language: the server stores English summaries for the API."""

from __future__ import annotations

import re

from server.audit.models import AuditEntry
from server.console.catalogue import CATALOGUE
from server.console.i18n import Translator

# Summaries the server writes in English (users.routes, live.routes, health_routes).
FIXED = {
    "API token issued": "audit.sum.api_token",
    "console session": "audit.sum.console_session",
    "wrong username or password": "audit.sum.wrong_password",
}
_LIVE = re.compile(r"^(\w+) live \((\w+)\) to (\d+) devices$")
_COMMAND = re.compile(r"^(\w+) → (.+)$")
_USER = re.compile(r"^(.+) \((\w+)\)$")


def audit_summary(entry: AuditEntry, t: Translator, *, device_names: dict[str, str]) -> str:
    """The entry's summary, translated where the server wrote it; users' own text as typed."""
    summary = entry.summary or ""
    if summary in FIXED:
        return t(FIXED[summary])
    if entry.action.startswith("live.") and (m := _LIVE.match(summary)):
        priority, source, n = m.groups()
        return t(
            "audit.sum.live",
            priority=_label(t, f"priority.{priority}", priority),
            source=_label(t, f"live.js.src.{source}", source),
            n=n,
        )
    if entry.action == "device.command" and (m := _COMMAND.match(summary)):
        name, uid = m.groups()
        return t(
            "audit.sum.command",
            command=_label(t, f"cmd.{name}", name),
            device=device_names.get(uid, uid),
        )
    if entry.action == "user.create" and (m := _USER.match(summary)):
        username, role = m.groups()
        return f"{username} ({_label(t, f'role.{role}', role)})"
    if entry.object_type == "device" and summary in device_names:
        return device_names[summary]  # the server writes the code; people know the name
    return summary


def _label(t: Translator, key: str, fallback: str) -> str:
    return t(key) if key in CATALOGUE else fallback
