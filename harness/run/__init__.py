"""Execution: plan and judge pairs through a comparator, cache them, score, evaluate, and write the run record."""
