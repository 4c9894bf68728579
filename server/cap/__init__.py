"""CAP 1.2 alerts in (parsed safely, mapped to bulletins) and out (an Atom feed)."""
