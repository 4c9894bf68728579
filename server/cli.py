"""`loa-server`: run, migrate, manage the broker, and the all-in-one demo."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Annotated

import typer

from server.settings import ServerSettings, SettingsError

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
) -> None:
    """Run the HTTP API and the MQTT bridge (LOA_HTTP_HOST:LOA_HTTP_PORT)."""
    import uvicorn

    from server.app import create_app

    settings = _settings()
    try:
        settings.mqtt_secret()
        settings.admin_secret()
    except SettingsError as exc:
        _fail(str(exc))
    if migrate_first:
        migrate()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info"
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

    from server.broker.process import find_mosquitto, port_open, running_pid
    from server.broker.service import apply_broker_config
    from server.db import make_engine, make_session_factory, session_scope

    settings = _settings()
    try:
        settings.mqtt_secret()
    except SettingsError as exc:
        _fail(str(exc))
    with session_scope(make_session_factory(make_engine(settings.db_url))) as db:
        conf = apply_broker_config(db, settings=settings)
    pid = running_pid(settings.broker_dir)
    if pid is not None:
        typer.echo(f"Mosquitto (pid {pid}) reloaded {conf}")
        return
    binary = find_mosquitto(settings.mosquitto_bin)
    if foreground:
        os.execv(binary, [binary, "-c", str(conf)])
    if port_open(settings.mqtt_bind_host, settings.mqtt_port):
        _fail(f"port {settings.mqtt_port} is taken by another broker; set LOA_MQTT_PORT")
    subprocess.run([binary, "-c", str(conf), "-d"], check=True)
    typer.echo(f"Mosquitto started on {settings.mqtt_bind_host}:{settings.mqtt_port} with {conf}")


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
    from server.users import service as users

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
    agents: Annotated[int, typer.Option(help="how many simulated agents to start")] = 12,
) -> None:
    """Everything on one machine: SQLite, a local Mosquitto, the server, simulated agents."""
    from server.demo import run_demo

    sys.exit(run_demo(until_online=until_online, agent_count=agents))


def main() -> None:
    """Console-script entry point."""
    app()
