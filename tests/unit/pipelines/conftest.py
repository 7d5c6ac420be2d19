"""The forecasting package runs as top-level ``forecasting`` inside Azure ML; tests import it
the same way so pickled models and module paths match what the steps produce."""

from __future__ import annotations

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "pipelines" / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
