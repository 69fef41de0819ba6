"""The math and vocabulary of the method: levels, pairs, Thurstone MAP, the official procedure, anchors,
metrics, profiles and declared options. Imports nothing from the rest of the project (docs/architecture.md)."""
