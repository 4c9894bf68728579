"""The loa-agent command line: help texts, profile list, and what the agent may import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from edge_agent.cli import app
from firmware_profiles import available_profiles

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_profiles_lists_every_shipped_profile() -> None:
    result = runner.invoke(app, ["profiles"])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == available_profiles()
    assert "rpi4-usb-pa" in names and "sim" in names


def test_help_texts_say_how_to_configure() -> None:
    run_help = runner.invoke(app, ["run", "--help"]).output
    for text in ("--config", "--sim", "LOA_AGENT_NAME", "mqtt_password", "75"):
        assert text in run_help
    fleet_help = runner.invoke(app, ["fleet", "--help"]).output
    for text in ("--count", "--credentials", "--mqtt-host", "--mqtt-port"):
        assert text in fleet_help


def test_fleet_rejects_a_bad_credentials_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds.jsonl"
    creds.write_text("[]\n")
    result = runner.invoke(app, ["fleet", "--count", "1", "--credentials", str(creds)])
    assert result.exit_code == 2
    assert "line 1 must be an object" in result.output


def test_the_agent_loads_no_server_side_package() -> None:
    """Walk what importing the whole agent actually loads (static checks miss indirect ones)."""
    code = (
        "import sys, edge_agent.cli, edge_agent.agent, edge_agent.fleet, edge_agent.telemetry, "
        "edge_agent.hardware\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'server', 'fastapi', 'sqlalchemy', 'apscheduler', 'alembic', 'starlette', 'uvicorn'})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""
