"""The one folder the harness keeps things in between runs: the pair cache, downloaded split files,
the generated demo benchmark, the Compare2Score worker environment and `c2s score`'s run folders.

It is `$C2S_HOME` when set, else the platform's user cache folder (`platformdirs`, e.g.
~/.cache/c2s on Linux). Nothing is written into the current directory unless the user names it.
"""
from __future__ import annotations

import os
from pathlib import Path

#: the environment variable that moves the home folder
HOME_ENV = "C2S_HOME"


def home() -> Path:
    """The home folder (not created here: each user of it creates its own sub-folder)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("c2s", appauthor=False))


def pair_cache_path() -> Path:
    """The default SQLite pair cache, shared by every run and command."""
    return home() / "pairs.sqlite"


def splits_dir() -> Path:
    """Where `c2s datasets fetch` puts the official split files."""
    return home() / "compare2score_splits"


def demo_dir() -> Path:
    """Where the embedded demo benchmark is generated."""
    return home() / "demo"


def worker_env_dir() -> Path:
    """The Compare2Score worker's virtual environment (`c2s setup compare2score`)."""
    return home() / "compare2score-worker"


def score_runs_dir() -> Path:
    """Run folders of `c2s score` (its CSV goes where the user asks; the full run is kept here)."""
    return home() / "score-runs"
