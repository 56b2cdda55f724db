"""The user CLIs built on the protocol library: `edge-submit` (send tasks and control commands,
wait for their verified results) and `edge-watch` (a live, verified view of a fleet).

| module | job |
|---|---|
| `errors.py` | `ToolError` tree and the shared `ConfigError` under `EdgeError`, each with its exit status |
| `settings.py` | `ClientConfig` from a bundle file + `EDGE_*` + flags (on `agent.common.settings`) |
| `connection.py` | `ToolClient`: one paho connection with blocking connect/subscribe/publish |
| `params.py` | task parameters from `--params`, `--param`, `--param-file`; times and durations |
| `render.py` | values for people (arrays summarized) and for scripts (JSON) |
| `collect.py` | `Collector`: verified results and rejects reports of the tasks one run published |
| `submit.py`, `batch.py`, `progress.py` | `edge-submit` |
| `observe.py`, `board.py`, `watch.py` | `edge-watch`: message -> `Observation`; the table's state; CLI |
"""
