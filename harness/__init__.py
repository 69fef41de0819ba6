"""Compare2Score evaluation harness: pairwise LMM comparisons -> quality scores -> leaderboards."""

__version__ = "0.1.0"
