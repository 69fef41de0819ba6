"""Strict JSON values: every JSON the harness writes (run folders, anchors files, leaderboards, the pair
cache's metadata) goes through `strict_json`, so no reader meets a bare NaN or Infinity (invalid JSON); every
JSON a user gives is read through `parse_json`."""
from __future__ import annotations

import json
import math

import numpy as np


def strict_json(obj):
    """Plain JSON values: numpy values unwrapped, tuples as lists, NaN and infinities as null."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def parse_json(text: str):
    """`json.loads`, with a document nested too deeply for the parser (`[[[[...`) reported as the
    JSONDecodeError every reader already turns into a message naming its file (json raises RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to read", text[:100], 0) from None
