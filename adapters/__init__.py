"""Backends behind one pairwise-comparison interface (`adapters.base`)."""
from adapters.base import (  # noqa: F401
    Comparator,
    Comparisons,
    Pair,
    compare_batch,
    comparator_class,
    fingerprint_hash,
    load_comparator,
    parse_spec,
    rate_batch,
    register_comparator,
)
