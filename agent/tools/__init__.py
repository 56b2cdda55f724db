"""The user CLIs built on the protocol library: `edge-submit` (send tasks and control commands,
wait for their verified results) and `edge-watch` (a live, verified view of a fleet).

| module | job |
|---|---|
| `errors.py` | `ToolError` tree; every error carries the exit status it ends the program with |
| `settings.py` | `ClientConfig` from an operator/dashboard/device bundle file + `EDGE_*` + flags |
| `connection.py` | `ToolClient`: one paho connection with blocking connect/subscribe/publish |
| `params.py` | task parameters from `--params`, `--param`, `--param-file`; times and durations |
| `render.py` | values for people (arrays summarized) and for scripts (JSON) |
| `collect.py` | `Collector`: verified results and rejects reports of the tasks one run published |
| `submit.py`, `batch.py`, `progress.py` | `edge-submit` |
| `observe.py`, `board.py`, `watch.py` | `edge-watch`: message -> `Observation`; the table's state; CLI |
| `demo/` | `make run`: a throwaway fleet, broker, agent, demo device and edge-watch (its README) |
"""
