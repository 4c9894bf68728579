"""The live-audio test server, kept at its old import path: it lives in loa_testkit/stack.py."""

from __future__ import annotations

from loa_testkit.stack import live_stack, live_stacks

__all__ = ["live_stack", "live_stacks"]
