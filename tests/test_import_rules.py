"""The dependency direction of ARCHITECTURE.md, checked by walking every import."""

from __future__ import annotations

import ast
import re
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
# What only the server installs (the `server` extra): the Pi install stays light.
SERVER_ONLY = {
    "fastapi",
    "sqlalchemy",
    "apscheduler",
    "alembic",
    "starlette",
    "uvicorn",
    # jinja2 is not here: the edge agent draws an e-board's page with it (issue 16).
    "websockets",
    "argon2",
    "prometheus_client",
    "psycopg",
}
# Scaffolding and scripts around the product: the product never imports them.
AROUND = {"tests", "loa_testkit", "bench"}
# Bench scripts still being written in a parallel change; each moves to loa_testkit/ next.
# A feature's HTTP routes: server/<feature>/routes.py or server/<feature>/<name>_routes.py.
ROUTE_MODULE = re.compile(r"^server\.(?P<feature>\w+)\.(routes|\w+_routes)$")
# The one place that mounts every feature's routers.
ASSEMBLERS = {"server/app.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(path: Path) -> set[str]:
    """Every absolute module an import could name, `from a import b` giving both a and a.b."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _relative_imports(path: Path) -> list[int]:
    """Line numbers of `from . import x` and the like."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]


def _foreign_routes(rel: str, modules: set[str]) -> list[str]:
    """Route modules of another feature among the imports of the file at `rel` (posix)."""
    if rel in ASSEMBLERS:
        return []
    parts = rel.split("/")
    own = parts[1] if len(parts) > 2 and parts[0] == "server" else None
    found = []
    for name in sorted(modules):
        match = ROUTE_MODULE.match(name)
        if match and match["feature"] != own:
            found.append(name)
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_listed_package_is_there() -> None:
    """A renamed or moved package would make every rule below pass without checking anything."""
    assert set(ALLOWED) == OURS
    missing = [p for p in sorted(OURS) if not (ROOT / p / "__init__.py").is_file()]
    assert not missing, f"listed packages without a folder: {missing}"
    for package in OURS:
        assert len(_sources(package)) > 1, f"{package}/ holds no modules"
    routes = [p for p in _sources("server") if ROUTE_MODULE.match(_dotted(p))]
    assert len(routes) >= 5, "server/ lost its features' route modules: the route rule is void"


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_packages_only_import_what_the_architecture_allows() -> None:
    problems = []
    for package, allowed in ALLOWED.items():
        for path in _sources(package):
            for name in _imports(path):
                if name in OURS and name != package and name not in allowed:
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
                if package != "server" and name in SERVER_ONLY:
                    problems.append(f"{path.relative_to(ROOT)} imports server-only {name}")
                if name in AROUND:
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


def test_no_feature_imports_another_features_routes() -> None:
    """Shared helpers live in a service or a shared module, never in a route module."""
    problems = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _sources("server")
        for name in _foreign_routes(path.relative_to(ROOT).as_posix(), _modules(path))
    ]
    assert not problems, "route modules imported from outside their feature:\n" + "\n".join(
        problems
    )


def test_bench_and_the_testkit_never_import_tests() -> None:
    """bench/ runs without the test suite: what both need lives in loa_testkit/."""
    scripts = sorted((ROOT / "bench").glob("*.py")) + _sources("loa_testkit")
    assert len(scripts) > 5, "bench/ or loa_testkit/ moved: this rule checks nothing"
    offenders = {p.relative_to(ROOT).as_posix() for p in scripts if "tests" in _imports(p)}
    assert not offenders, f"import tests/: {sorted(offenders)}"


# What moved to loa_testkit/: importing the old paths fails loudly (they are gone).
MOVED = {
    "tests.brokerfix",
    "tests.edge_agent.harness",
    "tests.edge_agent.playfix",
    "tests.live.sim",
    "tests.live.stack",
    "tests.server.stack",
}


def test_tests_import_the_testkit_not_the_old_modules() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for name in sorted(_modules(path) & MOVED)
    ]
    assert not offenders, "import these from loa_testkit/:\n" + "\n".join(offenders)


def test_no_relative_imports() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in sorted(OURS | {"loa_testkit"})
        for path in _sources(package)
        for line in _relative_imports(path)
    ]
    assert not problems, "relative imports (spell the package out):\n" + "\n".join(problems)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from server.app import create_app\nimport fastapi\nimport psycopg\n")
    assert _imports(bad) == {"server", "fastapi", "psycopg"}
    assert {"fastapi", "psycopg"} <= _imports(bad) & SERVER_ONLY


def test_the_checker_sees_a_foreign_route_import(tmp_path: Path) -> None:
    reports, console = "server/reports/x.py", "server/console/x.py"
    cases = [
        (console, "from server.programmes.routes import now_of\n", ["server.programmes.routes"]),
        (reports, "from server.users import routes\n", ["server.users.routes"]),
        (console, "import server.devices.health_routes\n", ["server.devices.health_routes"]),
        (
            reports,
            "def f():\n    from server.clips.routes import router\n",
            ["server.clips.routes"],
        ),
        (console, "from server.reports.routes import router\n", ["server.reports.routes"]),
        (reports, "from server.reports.routes import router\n", []),  # its own feature
        (reports, "from server.programmes.workflow import approve\n", []),
        (console, "from server.programmes import conflicts\n", []),
        ("server/app.py", "from server.users.routes import router\n", []),  # mounts them all
    ]
    for where, source, expected in cases:
        assert _foreign_routes(where, _parsed(tmp_path, source)) == expected, (where, source)


def _parsed(tmp_path: Path, source: str) -> set[str]:
    module = tmp_path / "x.py"
    module.write_text(source)
    return _modules(module)


def test_the_checker_sees_a_relative_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("import os\nfrom . import service\nfrom ..orgs.models import Zone\n")
    assert _relative_imports(bad) == [2, 3]


def test_the_edge_install_pulls_no_server_packages() -> None:
    """`pip install loa[edge]` = base dependencies + the edge extra: none of the server's."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = project["dependencies"] + project["optional-dependencies"]["edge"]
    names = {
        d.split(">")[0].split("=")[0].split("[")[0].split("<")[0].strip().lower() for d in edge
    }
    assert not names & {"fastapi", "sqlalchemy", "apscheduler", "alembic", "uvicorn", "starlette"}
    assert not names & {"websockets", "argon2-cffi", "prometheus-client", "psycopg"}
    server = {
        d.split(">")[0].split("[")[0].lower() for d in project["optional-dependencies"]["server"]
    }
    assert {"fastapi", "sqlalchemy", "apscheduler", "alembic"} <= server
