"""What every stage records as it works: JSON logs, the Prometheus registry and the telemetry
counters fed on the task path, and the audit log. Leaves: they import no stage, and every stage
may import them (the gauges and /health that read the stages are in status/)."""
