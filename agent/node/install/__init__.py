"""`edge-agent install` / `uninstall`: the agent onto a board as a service, upgraded with a rollback.

| module | job |
|---|---|
| `commands.py` | the two commands' arguments, exit statuses |
| `plan.py` | the inputs read and checked, the agent.toml to install, before anything changes |
| `bundle.py`, `wheel.py` | the agent's bundle (.tar.gz or directory), the wheel (ours, whole, this CPU) |
| `installer.py` | the steps in order, the activation (start, restart, upgrade, rollback), the summary |
| `system.py` | the service user (useradd), files and directories with their owners |
| `venv.py` | /opt/edge-agent/<version> (venv + pip install) and the `current` link |
| `service.py` | systemd, or the installer itself (--no-systemd): start, stop, find the running agent |
| `health.py` | waiting for /health to say: this version, healthy, presence acknowledged |
| `units.py`, `templates/*.in` | the systemd units of the agent and the broker (defaults in deploy/systemd/) |
| `layout.py` | where everything lives (under a root: "/" on a board, a directory in tests) |
| `errors.py` | what stops the installer, each with what to do and its exit status |

Everything runs on the command's one thread. deploy/README.md is the operator's page.
"""
