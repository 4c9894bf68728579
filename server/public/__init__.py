"""Public channels: the commune's bulletin page and its RSS feed (no sign-in)."""
