"""The test server, kept at its old import path: it lives in loa_testkit/stack.py now."""

from __future__ import annotations

from loa_testkit.stack import ADMIN_PASSWORD, Stack, database, server_stack

__all__ = ["ADMIN_PASSWORD", "Stack", "database", "server_stack"]
