"""Where the community corpus lies: read by the scraper's local source and the labeler's sample."""

from __future__ import annotations

import os
from pathlib import Path


def default_corpus_dir() -> Path:
    """../shared/corpus beside the repository, unless BMT_CORPUS_DIR says otherwise."""
    configured = os.environ.get("BMT_CORPUS_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
