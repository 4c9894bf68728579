"""Relay sources: the admin-approved stations (national, provincial) a relay may use."""
