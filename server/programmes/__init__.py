"""Programmes: what plays when and where, with their approval workflow."""
