"""`python -m agent run --config agent.toml` is `edge-agent run --config agent.toml`."""

import sys

from .cli import main

sys.exit(main())
