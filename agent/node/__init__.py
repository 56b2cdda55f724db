"""The agent process of one edge node, one subpackage per stage of a task's path.

    link/     the MQTT connection: paho, batched reads and writes, the link's settings
    intake/   receipt: checks 1-9 of PROTOCOL 4/5, one group commit per batch, acknowledgements;
              control commands (PROTOCOL 8) and the task queries they answer
    store/    the durable state (TinyDB tables on the journal engine), the replay cache
    tasks/    a task's life: lifecycle, the ready queue by priority, APScheduler timers, dispatch
    exec/     the worker processes that run the kernels, and the kernel catalogue
    publish/  signing results, the outbox, presence and heartbeats
    observe/  what every stage records: logs, metrics and telemetry counters, the audit log
    status/   what the agent reports about itself: health, gauges, the HTTP endpoint
    app.py    builds the parts above and wires them (constructors only); start, stop, run until idle
    reload.py SIGHUP and sys.reload: trust store and configuration, all or nothing
    keys.py   the agent's signing key and trust store, from its bundle
    cli.py    `edge-agent`: run, check, store check, state (stateview.py: the task records of a
              data directory, read without writing, through intake's queries and store/readonly)

A task goes link -> intake -> store -> tasks -> exec -> publish -> link. Imports follow layers,
from the top: cli; app | stateview; reload | status; intake; tasks; exec | publish; link | keys; store;
observe; config; errors. A module imports only from layers below its own (siblings in one layer
not from each other), and there are no import cycles: the contracts in pyproject.toml
([tool.importlinter]) check both in `make lint`. Everything here may use `agent.protocol` and
`agent.common`; nothing outside the agent process imports `agent.node`.
"""
