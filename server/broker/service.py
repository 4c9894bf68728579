"""Keep the broker's password and ACL files in step with the database."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.broker.pki import broker_tls
from server.broker.process import reload_broker, write_broker_files
from server.broker.render import BrokerAccount, TlsListener, mosquitto_hash
from server.devices.models import Device
from server.settings import ServerSettings

log = logging.getLogger(__name__)
_write_lock = threading.Lock()


def device_accounts(db: Session) -> list[BrokerAccount]:
    """Broker accounts of every device that is not revoked, with the zones it reads."""
    devices = db.scalars(select(Device).where(Device.revoked_at.is_(None)).order_by(Device.uid))
    return [
        BrokerAccount(d.uid, d.mqtt_password_hash, tuple(z.id for z in d.zones)) for d in devices
    ]


def apply_broker_config(db: Session, *, settings: ServerSettings, log_to_file: bool = True) -> Path:
    """Write the broker files from the database and reload a running broker.

    Also issues the TLS certificate, or renews it when it nears expiry (same CA).
    """
    with _write_lock:
        files = broker_tls(settings)
        tls = (
            None
            if files is None
            else TlsListener(
                settings.mqtt_tls_port, settings.mqtt_tls_bind_host, files.certfile, files.keyfile
            )
        )
        conf = write_broker_files(
            broker_dir=settings.broker_dir,
            port=settings.mqtt_port,
            server_port=settings.server_mqtt_port,
            bind_host=settings.mqtt_bind_host,
            server_hash=mosquitto_hash(settings.mqtt_secret()),
            devices=device_accounts(db),
            max_packet_bytes=settings.mqtt_max_packet_bytes,
            log_to_file=log_to_file,
            tls=tls,
        )
        reload_broker(settings.broker_dir)
    return conf


class BrokerFiles:
    """The broker writer the event dispatcher uses (does nothing when we do not manage it)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings

    def write(self, db: Session) -> None:
        """Regenerate the password and ACL files from the committed database and reload."""
        if self.settings.manage_broker:
            apply_broker_config(db, settings=self.settings)
