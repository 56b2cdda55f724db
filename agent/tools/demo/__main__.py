"""`python -m agent.tools.demo`: what `make run` runs."""

import sys

from .run import main

sys.exit(main())
