"""Jinja2 prompt templates (the `.j2` files beside this module)."""
