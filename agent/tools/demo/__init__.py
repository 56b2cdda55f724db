"""`make run`: a throwaway fleet, the embedded broker, one agent, a demo device and the live view.

    python -m agent.tools.demo            # what `make run` runs; Ctrl-C stops everything
    python -m agent.tools.demo --help

Modules: `fleet` provisions `.demo/`, `processes` starts and stops the children in order,
`terminal` takes Ctrl-C away from make, `device` is the demo device and `mix` its tasks,
`bundle` connects a client from a bundle's TOML file, `watch` is the stand-in live view.
"""
