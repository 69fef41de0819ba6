"""Reporting: run reports, plots and leaderboards, read through the run record (harness.run.record)."""
