"""`python -m agent run --config agent.toml` is `edge-agent run --config agent.toml`."""

import sys

from .node.cli import main

if __name__ == "__main__":  # worker processes import this module again, as __mp_main__
    sys.exit(main())
