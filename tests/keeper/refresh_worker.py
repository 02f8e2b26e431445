"""A separate OS process that runs one refresh pass (used by the race and kill -9 tests).

Usage: python tests/keeper/refresh_worker.py  (config as JSON in REFRESH_WORKER_CONFIG)
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app import create_app


def main() -> None:
    """Build the app from the given config and run the engine once; print the report."""
    cfg = json.loads(os.environ["REFRESH_WORKER_CONFIG"])
    app = create_app(cfg)
    report = app.extensions["services"].engine.run(trigger="test")
    print(json.dumps(report.as_dict()), flush=True)


if __name__ == "__main__":
    main()
