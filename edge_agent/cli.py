"""`loa-agent`: run one agent, a fleet of simulated agents, or list firmware profiles."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn, Protocol

import typer

from edge_agent import agent_version
from edge_agent.settings import DEFAULT_CONFIG_FILE, SettingsError, load_settings
from firmware_profiles import ProfileError, available_profiles, load_profile

# 2 = configuration a technician must fix. deploy/loa-agent.service still restarts on it
# (every 5 s): on a pole, a USB sound card that appears late must not leave the agent dead.
CONFIG_EXIT_CODE = 2

app = typer.Typer(
    name="loa-agent",
    help="Loa edge agent: runs one loudspeaker cluster and talks to the server over MQTT.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,  # plain tracebacks for journald; never print locals
)


class LogLevel(StrEnum):
    """Log levels offered on the command line."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class _Runner(Protocol):
    async def run(self) -> int: ...

    def request_stop(self, exit_code: int = 0) -> None: ...


def _fail(message: str) -> NoReturn:
    typer.echo(f"loa-agent: {message}", err=True)
    raise typer.Exit(CONFIG_EXIT_CODE)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


async def _run_until_signalled(runner: _Runner) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.request_stop)
    return await runner.run()


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help=f"TOML settings file (e.g. {DEFAULT_CONFIG_FILE}); LOA_AGENT_* variables "
            "override its keys.",
            dir_okay=False,
        ),
    ] = None,
    sim: Annotated[
        bool,
        typer.Option(
            "--sim",
            help="Simulated hardware: no GPIO or sound card, fake sensor figures; the firmware "
            "profile defaults to 'sim'.",
        ),
    ] = False,
) -> None:
    """Run the agent until SIGTERM/SIGINT.

    Each setting comes from the environment variable LOA_AGENT_NAME or the key `name` of the
    --config file (the variable wins): device_id, mqtt_host, mqtt_port (1883), mqtt_password,
    firmware_profile (see `loa-agent profiles`; "sim" with --sim), data_dir
    (./var/agent/DEVICE_ID), keepalive_s (15), telemetry_interval_s (30), min_backoff_s (1),
    max_backoff_s (60), connect_timeout_s (10), log_level (INFO), clip_quota_mb (2048),
    clip_holdoff_s (5), clip_retry_max_s (300), clock_sync_interval_s (30),
    clock_sync_fast_interval_s (5), clock_sync_live_interval_s (0.5),
    clock_sync_stable_error_ms (0.2),
    clock_sync_window_s (600), player_lead_s (1), slot_grace_s (300), event_resend_s (30).

    With --sim, audio is recorded to DATA_DIR/sim/output.wav with one JSON line per
    segment and item (when it was heard) in DATA_DIR/sim/plays.jsonl.

    Exit codes: 0 stopped; 2 bad settings, profile or hardware setup (fix it, then start
    again); 75 the server asked for a restart (restart the service).
    """
    from edge_agent.agent import Agent
    from edge_agent.hardware import HardwareError, make_hardware
    from edge_agent.telemetry import make_sensors

    try:
        settings = load_settings(config_file=config, sim=sim)
    except SettingsError as exc:
        _fail(str(exc))
    _configure_logging(settings.log_level)
    if settings.tls and settings.tls_ca_file is not None and not settings.tls_ca_file.is_file():
        _fail(
            f"tls_ca_file {settings.tls_ca_file} does not exist: save the server's "
            "GET /api/v1/broker/ca.pem there"
        )
    try:
        profile = load_profile(settings.profile_name)
    except ProfileError as exc:
        _fail(f"{exc} (set LOA_AGENT_FIRMWARE_PROFILE or firmware_profile; see loa-agent profiles)")
    try:
        hardware = make_hardware(profile=profile, sim=sim)
    except HardwareError as exc:
        _fail(str(exc))
    sensors = make_sensors(
        profile=profile, device_id=settings.device_id, data_dir=settings.state_dir, sim=sim
    )

    async def main() -> int:
        agent = Agent(
            settings=settings, profile=profile, hardware=hardware, sensors=sensors, sim=sim
        )
        return await _run_until_signalled(agent)

    raise typer.Exit(asyncio.run(main()))


@app.command()
def fleet(
    count: Annotated[int, typer.Option("--count", min=1, help="How many agents to run.")],
    credentials: Annotated[
        Path,
        typer.Option(
            "--credentials",
            dir_okay=False,
            help='JSON lines, one {"device_id": ..., "password": ...} per device (the server '
            "writes it); the first --count lines are used.",
        ),
    ],
    mqtt_host: Annotated[str, typer.Option("--mqtt-host", help="Broker host.")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option("--mqtt-port", help="Broker port.")] = 1883,
    data_root: Annotated[
        Path, typer.Option("--data-root", help="Each agent keeps its state in DATA_ROOT/DEVICE_ID.")
    ] = Path("var/agent"),
    ramp: Annotated[
        float, typer.Option("--ramp", min=0, help="Spread the agents' starts over this many s.")
    ] = 0.0,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", help="Log level (fleets are noisy at INFO).")
    ] = LogLevel.WARNING,
) -> None:
    """Run COUNT simulated agents (profile 'sim') in this process until SIGTERM/SIGINT.

    Other settings (keep-alive, telemetry interval, backoff) come from LOA_AGENT_* variables,
    as for `run`.
    """
    from edge_agent.fleet import Fleet, FleetError, read_credentials

    _configure_logging(log_level.value)
    try:
        creds = read_credentials(credentials, count=count)
        runner = Fleet(
            credentials=creds,
            mqtt_host=mqtt_host,
            mqtt_port=mqtt_port,
            data_root=data_root,
            ramp_s=ramp,
        )
    except (FleetError, SettingsError, ProfileError) as exc:
        _fail(str(exc))

    async def main() -> int:
        return await _run_until_signalled(runner)

    raise typer.Exit(asyncio.run(main()))


@app.command()
def install(
    registration: Annotated[
        Path,
        typer.Option(
            "--registration",
            dir_okay=False,
            help="the server's JSON answer to POST /api/v1/devices (or .../credentials)",
        ),
    ],
    wheels: Annotated[
        Path | None,
        typer.Option(
            "--wheels",
            file_okay=False,
            help="directory with the loa wheel and its dependencies (pip installs offline)",
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            file_okay=False,
            help="write every file under this directory and run no system command (print it)",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check and print every step; change nothing")
    ] = False,
    skip_audio_check: Annotated[
        bool,
        typer.Option("--skip-audio-check", help="do not look for the profile's sound card"),
    ] = False,
) -> None:
    """Install this Pi as the registered device: user, venv, /etc/loa/agent.toml, CA, service.

    Run as root on the Pi. It checks the firmware profile's sound card and mixer first and,
    when they are missing, says what to fix and changes nothing. Exit code 2: fix and rerun.
    """
    from edge_agent.install import InstallError
    from edge_agent.install import install as install_agent

    try:
        install_agent(
            registration_file=registration,
            wheels=wheels,
            root=root,
            dry_run=dry_run,
            check_audio=not skip_audio_check,
            say=typer.echo,
        )
    except InstallError as exc:
        _fail(str(exc))


@app.command()
def profiles() -> None:
    """List the firmware profiles shipped with the agent (name, board, description)."""
    broken = False
    for name in available_profiles():
        try:
            profile = load_profile(name)
        except ProfileError as exc:
            typer.echo(f"{name:<28} INVALID: {exc}")
            broken = True
            continue
        typer.echo(f"{profile.name:<28} {profile.board:<20} {profile.description}")
    if broken:
        raise typer.Exit(CONFIG_EXIT_CODE)


@app.command()
def version() -> None:
    """Print the agent version."""
    typer.echo(agent_version())


def main() -> None:
    """Entry point of the loa-agent console script."""
    app()
