"""`loa-server`: run, migrate, manage the broker, and the all-in-one demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer

from server.settings import ServerSettings, SettingsError

if TYPE_CHECKING:
    import uvicorn

app = typer.Typer(
    help="Loa central server: clips, programmes, live audio and device health for commune "
    "loudspeaker clusters. Settings come from LOA_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> ServerSettings:
    return ServerSettings()


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (LOA_DATABASE_URL, default SQLite in LOA_DATA_DIR)."""
    from server.db import make_engine
    from server.migrate import upgrade

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(make_engine(settings.db_url))
    typer.echo(f"database is up to date: {settings.db_url}")


@app.command()
def serve(
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="serve HTTPS with this certificate (PEM, full chain)")
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="the certificate's private key")] = None,
) -> None:
    """Run the HTTP API and the MQTT bridge (LOA_HTTP_HOST:LOA_HTTP_PORT).

    HTTPS: --ssl-certfile and --ssl-keyfile, or a reverse proxy (deploy/Caddyfile).
    """
    import uvicorn

    from server.app import create_app

    settings = _settings()
    try:
        settings.mqtt_secret()
        settings.admin_secret()
    except SettingsError as exc:
        _fail(str(exc))
    if (ssl_certfile is None) != (ssl_keyfile is None):
        _fail("give both --ssl-certfile and --ssl-keyfile, or neither")
    for path in (ssl_certfile, ssl_keyfile):
        if path is not None and not path.is_file():
            _fail(f"{path} does not exist")
    if migrate_first:
        migrate()
    from server.logs import configure_logging

    configure_logging()  # LOA_LOG_LEVEL; the planner's 15 s scheduler ticks only at DEBUG
    server = uvicorn.Server(
        http_config(
            create_app(settings), settings, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile
        )
    )
    server.run()
    if not server.started:
        sys.exit(3)  # as uvicorn.run does: the app did not start (port taken, lifespan failed)


def http_config(
    asgi_app: Any,
    settings: ServerSettings,
    *,
    log_level: str = "info",
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
) -> uvicorn.Config:
    """uvicorn's settings for `serve` (a uvicorn.Config; tests serve the app the same way)."""
    import uvicorn

    return uvicorn.Config(
        asgi_app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=log_level,
        # uvicorn would otherwise rewrite the peer from X-Forwarded-For for 127.0.0.1 (its
        # default FORWARDED_ALLOW_IPS), so any local client could pick its own address;
        # client_ip() believes the header from LOA_TRUSTED_PROXIES only.
        proxy_headers=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


@app.command()
def broker(
    foreground: Annotated[
        bool, typer.Option(help="run Mosquitto in the foreground (for a service manager)")
    ] = False,
) -> None:
    """Write Mosquitto's config, password and ACL files from the database; start or reload it.

    Re-run after adding or revoking devices (the API also does this by itself when
    LOA_MANAGE_BROKER is true). A revoked device is refused at its next connect.
    """
    import os

    from server.broker.pki import PkiError
    from server.broker.process import find_mosquitto, port_open, running_pid
    from server.broker.service import apply_broker_config
    from server.db import make_engine, make_session_factory, session_scope

    settings = _settings()
    try:
        settings.mqtt_secret()
    except SettingsError as exc:
        _fail(str(exc))
    if foreground:
        _forget_stale_broker(settings)
    with session_scope(make_session_factory(make_engine(settings.db_url))) as db:
        try:
            conf = apply_broker_config(db, settings=settings)
        except PkiError as exc:
            _fail(str(exc))
    pid = running_pid(settings.broker_dir)
    if pid is not None:
        typer.echo(f"Mosquitto (pid {pid}) reloaded {conf}")
        return
    binary = find_mosquitto(settings.mosquitto_bin)
    if foreground:
        os.execv(binary, [binary, "-c", str(conf)])
    if port_open(settings.mqtt_bind_host, settings.mqtt_port):
        _fail(f"port {settings.mqtt_port} is taken by another broker; set LOA_MQTT_PORT")
    if port_open("127.0.0.1", settings.server_mqtt_port):
        _fail(f"port {settings.server_mqtt_port} is taken; set LOA_MQTT_SERVER_PORT")
    if settings.mqtt_tls_port and port_open("127.0.0.1", settings.mqtt_tls_port):
        _fail(f"port {settings.mqtt_tls_port} is taken; set LOA_MQTT_TLS_PORT")
    subprocess.run([binary, "-c", str(conf), "-d"], check=True)
    typer.echo(f"Mosquitto started on {settings.mqtt_bind_host}:{settings.mqtt_port} with {conf}")
    if settings.mqtt_tls_port:
        typer.echo(
            f"devices: TLS on {settings.mqtt_tls_bind_host}:{settings.mqtt_tls_port} "
            f"as {settings.device_mqtt_host} (CA: GET /api/v1/broker/ca.pem)"
        )


def _forget_stale_broker(settings: ServerSettings) -> None:
    """Before a foreground start: refuse if a broker runs, else drop a pid file left by a crash."""
    from server.broker.process import port_open, running_pid

    pid = running_pid(settings.broker_dir)
    if pid is not None and port_open(settings.mqtt_bind_host, settings.mqtt_port):
        _fail(f"Mosquitto (pid {pid}) already runs on port {settings.mqtt_port}; stop it first")
    # After a crash or a power cut the recorded pid may belong to another process by now:
    # it must not get the reload's SIGHUP (the service manager stopped the old broker).
    (settings.broker_dir / "mosquitto.pid").unlink(missing_ok=True)


@app.command()
def backup(dest: Annotated[Path, typer.Argument(help="a new or empty directory")]) -> None:
    """Snapshot the database, clips and broker secrets into DEST (safe while the server runs)."""
    from server.backup import BackupError, write_backup

    try:
        manifest = write_backup(settings=_settings(), dest=dest)
    except BackupError as exc:
        _fail(str(exc))
    typer.echo(
        f"backup written to {dest}: {len(manifest['files'])} files, "
        f"{manifest['database']['kind']} at revision {manifest['alembic_revision']}"
    )
    if manifest["missing_clips"]:
        typer.echo(f"warning: clips deleted during the backup: {manifest['missing_clips']}")


@app.command()
def restore(
    src: Annotated[Path, typer.Argument(help="a directory written by `loa-server backup`")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="the new LOA_DATA_DIR")],
    force: Annotated[bool, typer.Option(help="replace the data of a non-empty data dir")] = False,
) -> None:
    """Verify a backup (sha256 of every file) and lay it out in a fresh data dir.

    Then start it with LOA_DATA_DIR set to that directory: `loa-server broker`, `loa-server
    serve`. Devices reconnect with their existing credentials.
    """
    from server.backup import BackupError, restore_backup
    from server.broker.service import apply_broker_config
    from server.db import make_engine, make_session_factory, session_scope

    settings = ServerSettings(data_dir=data_dir)
    try:
        manifest = restore_backup(src=src, settings=settings, force=force)
    except BackupError as exc:
        _fail(str(exc))
    typer.echo(f"restored the backup of {manifest['created_at']} into {data_dir}")
    try:
        settings.mqtt_secret()
    except SettingsError as exc:
        typer.echo(f"broker config not written ({exc}); run `loa-server broker` once it is set")
        return
    engine = make_engine(settings.db_url)
    with session_scope(make_session_factory(engine)) as db:
        conf = apply_broker_config(db, settings=settings)
    engine.dispose()
    typer.echo(f"broker config written: {conf}")


@app.command("create-user")
def create_user(
    username: str,
    role: Annotated[
        str, typer.Option(help="admin, editor, approver, operator, technician, viewer")
    ],
    org_unit_id: Annotated[int | None, typer.Option(help="org unit the user acts in")] = None,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
) -> None:
    """Add a user from the command line."""
    from server.db import make_engine, make_session_factory, session_scope
    from server.users import accounts as users

    settings = _settings()
    with session_scope(make_session_factory(make_engine(settings.db_url))) as db:
        try:
            users.create_user(
                db, username=username, password=password, role=role, org_unit_id=org_unit_id
            )
        except users.InvalidRole as exc:
            _fail(str(exc))
    typer.echo(f"user {username} created")


@app.command()
def demo(
    until_online: Annotated[
        bool, typer.Option(help="exit once every simulated device shows online (for tests)")
    ] = False,
    agents: Annotated[
        int,
        typer.Option(
            help="how many simulated loudspeaker clusters to start (the e-board starts as well)"
        ),
    ] = 12,
) -> None:
    """Everything on one machine: SQLite, a local Mosquitto, the server, simulated agents."""
    from server.demo import run_demo

    sys.exit(run_demo(until_online=until_online, agent_count=agents))


@app.command()
def live(
    input_path: Annotated[
        str,
        typer.Option(
            "--input", "-i", help="audio file (any format FFmpeg reads), or - for raw PCM on stdin"
        ),
    ],
    zone: Annotated[
        list[int] | None, typer.Option(help="target zone id (repeat for several zones)")
    ] = None,
    org_unit: Annotated[
        int | None, typer.Option(help="target an org unit and everything under it")
    ] = None,
    priority: Annotated[
        Literal["normal", "priority", "emergency"],
        typer.Option(help="emergency pre-empts everything and needs confirmation (or --yes)"),
    ] = "normal",
    delay_ms: Annotated[
        str,
        typer.Option(
            help="playout delay on the devices: 100-5000 ms, or 'auto' (the server sizes it "
            "from the devices' reported links)"
        ),
    ] = "500",
    label: Annotated[str, typer.Option(help="label shown in the console")] = "",
    duration: Annotated[
        float | None, typer.Option(help="end the session after this many seconds")
    ] = None,
    rate: Annotated[
        int, typer.Option(help="sample rate of raw PCM on stdin (--input -), resampled to 48 kHz")
    ] = 48000,
    server: Annotated[
        str, typer.Option(envvar="LOA_SERVER", help="server base URL")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None, typer.Option(envvar="LOA_TOKEN", help="bearer token (instead of a password)")
    ] = None,
    username: Annotated[str | None, typer.Option(help="sign in as this user")] = None,
    password: Annotated[
        str | None,
        typer.Option(envvar="LOA_PASSWORD", help="password for --username (prompted if absent)"),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask to confirm an emergency")] = False,
) -> None:
    """Broadcast a local file, a line-in or a pipe live to zones now.

    --input - reads raw s16le mono PCM (48 kHz unless --rate) from stdin, e.g.
    `arecord -f S16_LE -r 48000 -c 1 -t raw | loa-server live --input - --zone 3`.
    Ctrl-C stops the broadcast cleanly.
    """
    import asyncio

    from server.live import client

    def fail(message: str) -> NoReturn:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)

    from_stdin = input_path == "-"
    delay = _delay_option(delay_ms)
    if delay is None:
        fail(f"--delay-ms must be a number of milliseconds (100-5000) or 'auto', not {delay_ms!r}")
    if not zone and org_unit is None:
        fail("choose where to broadcast: --zone ID (repeatable) or --org-unit ID")
    if from_stdin and sys.stdin.isatty():
        fail("--input - reads raw PCM from a pipe, e.g. arecord -t raw ... | loa-server live")
    if priority == "emergency" and not yes:
        if from_stdin or not sys.stdin.isatty():
            fail("an emergency broadcast needs confirmation: add --yes (no terminal to ask)")
        answer = typer.prompt("This is an EMERGENCY broadcast to every target. Type YES to go")
        if answer.strip() != "YES":
            fail("emergency broadcast cancelled")
    try:
        base = client.check_server(server)
        if not token:
            if username is None:
                fail("sign in: --token (or LOA_TOKEN), or --username with a password")
            if password is None:
                if from_stdin:
                    fail("stdin carries the audio: give the password in LOA_PASSWORD")
                password = typer.prompt(f"Password for {username}", hide_input=True)
            token = client.sign_in(server=base, username=str(username), password=str(password))
        request = client.LiveRequest(
            zone_ids=tuple(zone or ()), org_unit_id=org_unit, priority=priority,
            playout_delay_ms=delay, label=label or _live_label(input_path), duration_s=duration,
        )  # fmt: skip
        code = asyncio.run(
            client.run_live(
                server=base, token=token, request=request, input_path=input_path, rate=rate,
                say=lambda line: typer.echo(line, err=True), out=typer.echo,
            )
        )  # fmt: skip
    except client.ClientError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        # Before the session started, or a second Ctrl-C: an unfed session ends by itself
        # after its idle timeout (10 s).
        fail("interrupted")
    raise typer.Exit(code)


def _delay_option(value: str) -> int | str | None:
    """--delay-ms: a whole number of milliseconds or 'auto' (None: neither)."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        return None


def _live_label(input_path: str) -> str:
    """A console label for the input: the file name, or "line-in" for stdin."""
    from pathlib import Path

    return "line-in" if input_path == "-" else Path(input_path).name[:200]


def main() -> None:
    """Console-script entry point."""
    app()
