"""The dependency direction of ARCHITECTURE.md, checked by walking every import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {"protocol", "schedules", "audio", "firmware_profiles", "server", "edge_agent"}
ALLOWED: dict[str, set[str]] = {
    "protocol": {"schedules"},
    "schedules": set(),
    "audio": set(),
    "firmware_profiles": set(),
    "server": {"protocol", "schedules", "audio", "firmware_profiles"},
    "edge_agent": {"protocol", "schedules", "audio", "firmware_profiles"},
}
SERVER_ONLY = {"fastapi", "sqlalchemy", "apscheduler", "alembic", "starlette", "uvicorn"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_packages_only_import_what_the_architecture_allows() -> None:
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in _imports(path):
                if name in OURS and name != package and name not in allowed:
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
                if package != "server" and name in SERVER_ONLY:
                    problems.append(f"{path.relative_to(ROOT)} imports server-only {name}")
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from server.app import create_app\nimport fastapi\n")
    assert _imports(bad) == {"server", "fastapi"}


def test_the_edge_install_pulls_no_server_packages() -> None:
    """`pip install loa[edge]` = base dependencies + the edge extra: none of the server's."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = project["dependencies"] + project["optional-dependencies"]["edge"]
    names = {
        d.split(">")[0].split("=")[0].split("[")[0].split("<")[0].strip().lower() for d in edge
    }
    assert not names & {"fastapi", "sqlalchemy", "apscheduler", "alembic", "uvicorn", "starlette"}
    server = {
        d.split(">")[0].split("[")[0].lower() for d in project["optional-dependencies"]["server"]
    }
    assert {"fastapi", "sqlalchemy", "apscheduler", "alembic"} <= server
