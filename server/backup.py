"""`loa-server backup` / `restore`: a consistent snapshot of one server's data, and back.

A backup is a directory: the database (SQLite through its online backup API, PostgreSQL
through pg_dump), the clip store, the broker's secrets and retained messages, the demo
secrets, and manifest.json (written last) with a sha256 for every file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from server.broker.process import running_pid
from server.settings import ServerSettings

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
# Generated from the database too, but kept so a restored broker starts as it was; the
# persistence file holds the retained desired state (schedules, volumes) devices read.
BROKER_FILES = ("passwd", "passwd-server", "acl", "mosquitto.db")
SECRETS_FILE = "demo-secrets.json"
# The broker's private CA: without its key, a restored server would make a new CA that no
# device trusts.
PKI_FILES = ("ca.pem", "ca.key", "server.pem", "server.key")
CLIP_DIRS = ("dist", "orig")  # clips/tmp holds unfinished uploads only


class BackupError(RuntimeError):
    """A backup or restore that cannot be done; the message says why and what to do."""


def write_backup(*, settings: ServerSettings, dest: Path) -> dict[str, Any]:
    """Snapshot the server's data into the empty or new directory `dest`; return the manifest."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} is not empty; back up into a new directory")
    url = make_url(settings.db_url)
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    (dest / "database").mkdir()
    if url.get_backend_name() == "sqlite":
        db_file = "database/loa.db"
        _sqlite_snapshot(Path(str(url.database)), dest / db_file)
        facts_url = f"sqlite:///{(dest / db_file).resolve()}"
    elif url.get_backend_name() == "postgresql":
        db_file = "database/loa.sql"
        _pg_dump(url, dest / db_file)
        facts_url = settings.db_url
    else:
        raise BackupError(f"cannot back up a {url.get_backend_name()} database")
    revision, clip_shas = _db_facts(facts_url)

    _save_broker_persistence(settings.broker_dir)
    for name in BROKER_FILES:
        _copy_if_present(settings.broker_dir / name, dest / "mosquitto" / name)
    _copy_if_present(settings.data_dir / SECRETS_FILE, dest / SECRETS_FILE)
    for name in PKI_FILES:
        _copy_if_present(settings.data_dir / "pki" / name, dest / "pki" / name)
    # After the database: clip files are immutable and written before their row commits, so
    # every clip the snapshot names is on disk (unless deleted meanwhile, reported below).
    clips = settings.data_dir / "clips"
    for sub in CLIP_DIRS:
        for path in sorted((clips / sub).rglob("*")) if (clips / sub).is_dir() else []:
            if path.is_file():
                _copy_if_present(path, dest / "clips" / path.relative_to(clips))
    missing = sorted(
        sha for sha in clip_shas if not (dest / "clips" / "dist" / sha[:2] / f"{sha}.opus").exists()
    )
    if missing:
        log.warning("%d clip file(s) vanished during the backup: %s", len(missing), missing)
    manifest = {
        "format": FORMAT,
        "loa_version": _loa_version(),
        "created_at": datetime.now(UTC).isoformat(),
        "alembic_revision": revision,
        "database": {"kind": url.get_backend_name(), "file": db_file},
        "source_data_dir": str(settings.data_dir.resolve()),
        "missing_clips": missing,
        "files": [_entry(dest, p) for p in sorted(dest.rglob("*")) if p.is_file()],
    }
    tmp = dest / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest / MANIFEST)
    return manifest


def verify_backup(src: Path) -> dict[str, Any]:
    """Read the manifest and check every file's size and sha256; return the manifest."""
    try:
        manifest: dict[str, Any] = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src} has no readable {MANIFEST}: not a (complete) backup") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r} (expected {FORMAT})")
    bad = []
    for item in manifest["files"]:
        path = src / item["path"]
        if (
            not path.is_file()
            or path.stat().st_size != item["size"]
            or _sha256(path) != item["sha256"]
        ):
            bad.append(item["path"])
    if bad:
        raise BackupError(f"{len(bad)} file(s) missing or not matching their sha256: {bad[:10]}")
    return manifest


def restore_backup(*, src: Path, settings: ServerSettings, force: bool = False) -> dict[str, Any]:
    """Verify the backup at `src`, then lay it out in settings.data_dir (and its database)."""
    manifest = verify_backup(src)
    data_dir = settings.data_dir
    if running_pid(settings.broker_dir) is not None:
        raise BackupError(f"a broker is running on {settings.broker_dir}; stop it first")
    if data_dir.exists() and any(data_dir.iterdir()):
        if not force:
            raise BackupError(
                f"{data_dir} is not empty; restore into a fresh directory, or add --force to "
                "replace its database, clips and broker files"
            )
        _clear(settings)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    kind, target = manifest["database"]["kind"], make_url(settings.db_url)
    if target.get_backend_name() != kind:
        raise BackupError(
            f"the backup holds a {kind} database but LOA_DATABASE_URL points at "
            f"{target.get_backend_name()}; point it at an empty {kind} database"
        )
    db_src = src / manifest["database"]["file"]
    if kind == "sqlite":
        db_path = Path(str(target.database))
        if db_path.exists() and not force:
            raise BackupError(f"{db_path} exists; remove it or add --force")
        db_path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
            stale.unlink(missing_ok=True)
        _copy_if_present(db_src, db_path)
    else:
        _pg_restore(target, db_src)
    for item in manifest["files"]:
        rel = Path(item["path"])
        if rel.parts[0] == "clips":
            _copy_if_present(src / rel, data_dir / rel)
        elif rel.parts[0] == "mosquitto":
            _copy_if_present(src / rel, settings.broker_dir / rel.name)
        elif str(rel) == SECRETS_FILE:
            _copy_if_present(src / rel, data_dir / SECRETS_FILE)
        elif rel.parts[0] == "pki" and rel.name in PKI_FILES:
            (data_dir / "pki").mkdir(mode=0o700, exist_ok=True)
            _copy_if_present(src / rel, data_dir / "pki" / rel.name)
    revision, _shas = _db_facts(settings.db_url)
    if revision != manifest["alembic_revision"]:
        raise BackupError(
            f"restored database is at revision {revision!r}, the manifest says "
            f"{manifest['alembic_revision']!r}"
        )
    return manifest


# -- database ------------------------------------------------------------------------------


def _sqlite_snapshot(source: Path, out: Path) -> None:
    """Copy a live SQLite database page by page inside one read transaction (never cp)."""
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}; check LOA_DATA_DIR/LOA_DATABASE_URL")
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(out)
    try:
        src.backup(dst)
        # One self-contained file: no -wal to forget next to it.
        dst.execute("PRAGMA journal_mode=DELETE")
        (check,) = dst.execute("PRAGMA integrity_check").fetchone()
    finally:
        dst.close()
        src.close()
    os.chmod(out, 0o600)
    if check != "ok":
        raise BackupError(f"the snapshot of {source} failed its integrity check: {check}")


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and an environment carrying it."""
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)  # not on the command line, where ps shows it
    dsn = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return dsn, env


def _pg_tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise BackupError(
            f"{name} is not on PATH: install the PostgreSQL client tools (same major version "
            f"as the server or newer, e.g. apt-get install postgresql-client), then retry"
        )
    return exe


def _pg_dump(url: URL, out: Path) -> None:
    """pg_dump's plain SQL: one consistent snapshot of a running PostgreSQL database."""
    dsn, env = _libpq(url)
    cmd = [_pg_tool("pg_dump"), "--no-owner", "--no-privileges", f"--file={out}", dsn]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[-2000:]}")
    os.chmod(out, 0o600)


def _pg_restore(url: URL, dump: Path) -> None:
    """Load a plain dump into an empty PostgreSQL database, all or nothing."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.scalar(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
            )
    finally:
        engine.dispose()
    if tables:
        raise BackupError(f"{url.database} is not empty; restore into a newly created database")
    dsn, env = _libpq(url)
    cmd = [_pg_tool("psql"), "--no-psqlrc", "--quiet", "--single-transaction",
           "-v", "ON_ERROR_STOP=1", f"--file={dump}", dsn]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"psql could not load the dump: {done.stderr.strip()[-2000:]}")


def _db_facts(url: str) -> tuple[str, list[str]]:
    """The Alembic revision and the sha256 of every clip a database names."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            revisions = conn.scalars(text("SELECT version_num FROM alembic_version")).all()
            shas = list(conn.scalars(text("SELECT sha256 FROM clips")).all())
    finally:
        engine.dispose()
    return ",".join(sorted(revisions)), shas


# -- files -------------------------------------------------------------------------------------


def _save_broker_persistence(broker_dir: Path) -> None:
    """Ask a running Mosquitto to write its retained messages now (SIGUSR1) and wait for it."""
    pid, db = running_pid(broker_dir), broker_dir / "mosquitto.db"
    if pid is None:
        return
    before = db.stat().st_mtime_ns if db.exists() else 0
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError as exc:
        log.warning("could not ask Mosquitto to save (%s); copying its last autosave", exc)
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        # Mosquitto writes mosquitto.db.new and renames it: a changed file is a whole one.
        if db.exists() and db.stat().st_mtime_ns != before:
            return
        time.sleep(0.05)
    log.warning("Mosquitto did not save within 5 s; copying its last autosave")


def _copy_if_present(src: Path, dest: Path) -> None:
    if not src.is_file():
        return  # e.g. no broker managed here: the manifest lists what is there
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A clip deleted between the listing and the copy.
    with contextlib.suppress(FileNotFoundError):
        shutil.copy2(src, dest)


def _clear(settings: ServerSettings) -> None:
    """Remove what a restore replaces (and nothing else) from a used data dir."""
    d = settings.data_dir
    for name in ("loa.db", "loa.db-wal", "loa.db-shm", SECRETS_FILE):
        (d / name).unlink(missing_ok=True)
    for sub in ("clips", settings.broker_dir.name):
        shutil.rmtree(d / sub, ignore_errors=True)


def _entry(root: Path, path: Path) -> dict[str, Any]:
    return {
        "path": path.relative_to(root).as_posix(),
        "size": path.stat().st_size,
        "sha256": _sha256(path),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _loa_version() -> str:
    try:
        return version("loa")
    except PackageNotFoundError:
        return "unknown"
