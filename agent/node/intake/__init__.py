"""Receipt of tasks and control commands: checks 1-9 (PROTOCOL 4 and 5), one group commit per
batch, acknowledgements in receive order once durable, rejections and rejects reports; the
`sys.*` commands (PROTOCOL 8) and the task queries they answer. May import the layers below it:
tasks, exec, publish, link, store, observe's leaves (logs, audit), config, errors."""
