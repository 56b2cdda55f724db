"""Command-line tools for people who operate a fleet (edge-submit, edge-watch) and the `make run` demo."""
