"""Outside systems that send bulletins with an API key (departments, source-information systems)."""
