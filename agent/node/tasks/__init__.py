"""A task's life after intake: its lifecycle (queued, scheduled, running, terminal), the ready
queue by priority and arrival, the APScheduler timers (run_at, every_s, cron, retries), and the
dispatch of ready attempts to idle workers. May import: exec, publish, store, observe's leaves,
config, errors."""
