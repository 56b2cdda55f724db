"""Watching the agent from outside: JSON logs, Prometheus metrics and the telemetry that feeds
them, health checks, the HTTP endpoint (/metrics, /health), the audit log. The leaves (logs,
metrics, audit) may be imported by every stage; telemetry and health read the parts they are
given and import no stage."""
