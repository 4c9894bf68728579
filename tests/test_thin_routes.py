"""Routes only parse, call and serialise: no commit, audit, event, MQTT or planner in a route."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUTE_MODULES = sorted(
    [
        *ROOT.glob("server/*/routes.py"),
        *ROOT.glob("server/*/*_routes.py"),
        *ROOT.glob("server/console/*_pages.py"),
        ROOT / "server/console/session.py",
        ROOT / "server/console/dashboard.py",
    ]
)
# Calls that are side effects; they belong in a use case (server/<feature>/service.py).
FORBIDDEN_CALLS = {
    "commit": "the request session commits when the route returns",
    "flush": "a use case flushes if it needs ids",
    "emit": "events are emitted by the use case",
    "request_replan": "emit ReplanNeeded in the use case",
    "broker_config_changed": "emit AclChanged in the use case",
    "apply_broker_config": "emit AclChanged in the use case",
    "publish": "emit an event; the dispatcher publishes after commit",
    "publish_state": "emit DesiredStateChanged in the use case",
    "session_scope": "use the request's SessionDep",
}
FORBIDDEN_ATTRS = {
    "bridge": "the MQTT bridge is reached only through the event dispatcher",
    "planner": "the planner is reached only through the event dispatcher",
}
# The few places where a route must look at app state, each with its reason.
ALLOWED: dict[tuple[str, str], str] = {
    # A test tone needs a live MQTT link now: without one the answer is 503, not a queued event.
    ("server/devices/health_routes.py", "bridge"): "503 when the server runs without MQTT",
    ("server/selftest/routes.py", "bridge"): "503 when the server runs without MQTT",
    ("server/console/device_pages.py", "bridge"): "the self-test form: as the API, no MQTT",
    # The operator's dashboard shows whether the planner leads in this process (read only).
    ("server/console/dashboard.py", "planner"): "read-only status",
}


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _violations(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name in FORBIDDEN_CALLS and (rel, name) not in ALLOWED:
                found.append(f"{rel}:{node.lineno} calls {name}(): {FORBIDDEN_CALLS[name]}")
            if isinstance(node.func, ast.Attribute) and name == "record":
                owner = _name(node.func.value)
                if owner == "audit":
                    found.append(f"{rel}:{node.lineno} audits: the use case records audit entries")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in FORBIDDEN_ATTRS
            and (rel, node.attr) not in ALLOWED
        ):
            found.append(f"{rel}:{node.lineno} uses .{node.attr}: {FORBIDDEN_ATTRS[node.attr]}")
        if (
            isinstance(node, ast.Constant)
            and node.value in FORBIDDEN_ATTRS
            and (rel, str(node.value)) not in ALLOWED
        ):
            found.append(f"{rel}:{node.lineno} reads {node.value!r} from app state")
    return found


def test_route_modules_exist() -> None:
    assert len(ROUTE_MODULES) >= 12, ROUTE_MODULES  # the glob must not pass vacuously


def test_routes_only_parse_call_and_serialise() -> None:
    problems = [v for path in ROUTE_MODULES for v in _violations(path)]
    assert problems == [], "\n".join(problems)


def test_the_rule_catches_a_route_that_commits(tmp_path: Path) -> None:
    bad = ROOT / "server" / "_probe_routes_tmp.py"
    bad.write_text(
        "def route(db, request):\n"
        "    db.commit()\n"
        "    audit.record(db)\n"
        "    request.app.state.bridge.publish_state('x', None)\n",
        encoding="utf-8",
    )
    try:
        found = _violations(bad)
    finally:
        bad.unlink()
    assert len(found) == 4, found
