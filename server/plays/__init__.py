"""Proof of play: what each device actually played, stored idempotently by (device, seq)."""
