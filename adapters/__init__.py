"""Backends behind one comparator contract (`adapters.base`)."""
from adapters.base import (  # noqa: F401
    Backend,
    Comparator,
    Comparisons,
    Pair,
    as_comparator,
    backends,
    check_model_options,
    compare_batch,
    comparator_class,
    fingerprint_hash,
    load_comparator,
    parse_spec,
    rate_batch,
    register_comparator,
)
