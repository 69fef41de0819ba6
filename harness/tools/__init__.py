"""Tools on top of the harness: backend parity checks, tiny offline models, the demo."""
