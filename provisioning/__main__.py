"""`python -m provisioning` is `edge-provision`."""

import sys

from .cli import main

sys.exit(main())
