"""``python3 -m spiralprune.deploy.device_runner ...`` with the bundle's ``runner/`` folder on ``PYTHONPATH``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
