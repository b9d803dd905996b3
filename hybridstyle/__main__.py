"""``python -m hybridstyle``: the ``hybridstyle`` command, also as ``accelerate launch -m hybridstyle stylize ...``."""

import sys

from .cli import main

sys.exit(main())
