"""Clips over MQTT: once per zone on the zone's clip topic, and exact chunks on request."""
