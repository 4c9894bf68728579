"""Real-part test scaffolding shared by tests/ and bench/: a Mosquitto, agents, a server double.

Not installed with the package (pyproject lists only the product's packages): tests and bench
scripts import it from the repository root.
"""
