"""`make run`: a throwaway fleet, the embedded broker, one agent, a demo device and the live view.

    python -m demo            # what `make run` runs; Ctrl-C stops everything
    python -m demo --help

Modules: `run` (the orchestrator), `fleet` provisions `.demo/`, `processes` starts and stops the
children in order, `terminal` takes Ctrl-C away from make, `view` runs edge-watch, `monitor`
follows the agent's presence, `device` is the demo device and `mix` its tasks.
"""
