"""Prometheus counters for one app instance (its own registry, so tests can make many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    """Counters the bridge and the API update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.mqtt_received = Counter(
            "loa_mqtt_messages_received",
            "MQTT messages read, by topic kind",
            ["kind"],
            registry=self.registry,
        )
        self.mqtt_rejected = Counter(
            "loa_mqtt_messages_rejected",
            "MQTT messages refused (logged), by topic kind and reason",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.mqtt_connected = Gauge(
            "loa_mqtt_connected",
            "1 while the server's broker connection is up",
            registry=self.registry,
        )
        self.devices_online = Gauge(
            "loa_devices_online", "devices currently online", registry=self.registry
        )

    def rejected(self, kind: str, reason: str) -> float:
        """Current count of rejections for (kind, reason); for tests and the status page."""
        value = self.registry.get_sample_value(
            "loa_mqtt_messages_rejected_total", {"kind": kind, "reason": reason}
        )
        return value or 0.0
