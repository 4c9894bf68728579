"""Audit log: who changed what, when, and from where; written in the change's transaction."""
