"""Citizen feedback ("phản ánh, kiến nghị"): public intake, staff queue, tracking codes."""
