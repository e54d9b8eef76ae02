"""``python -m sample_data``: the same as ``fleetwatch simulate``."""

import sys

from .cli import main

sys.exit(main())
