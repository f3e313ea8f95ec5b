import os
import sys
from pathlib import Path

# tests import their helper modules (workflow_helpers) by name
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
