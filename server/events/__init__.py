"""Domain events: what a committed change asks of the outside world (MQTT, broker, planner)."""
