"""`python -m broker`: the same as `edge-broker`."""

import sys

from .cli import main

sys.exit(main())
