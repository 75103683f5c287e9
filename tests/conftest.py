import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def corpora() -> Path:
    """Root of the shared corpora (``$SPEECHS2S_DATA`` or ``../shared/corpora``)."""
    root = Path(os.environ.get("SPEECHS2S_DATA", REPO.parent / "shared" / "corpora"))
    if not (root / "fsdd").is_dir():
        pytest.skip(f"corpora not found at {root} (set SPEECHS2S_DATA)")
    return root
