"""``python -m optimizer.bridge``: the same as ``optimizer bridge``."""

import sys

from . import main

sys.exit(main())
