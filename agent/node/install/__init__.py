"""`edge-agent install` / `uninstall`: the agent onto a board as a service, upgraded with a rollback.

| module | job |
|---|---|
| `layout.py` | where everything lives (under a root: "/" on a board, a directory in tests) |
| `units.py`, `units/*.in` | the systemd units of the agent and the broker (defaults in deploy/systemd/) |
| `errors.py` | what stops the installer, each with what to do |
"""
