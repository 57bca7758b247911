"""``python -m sxtdist.cli``."""

import sys

from . import main

sys.exit(main())
