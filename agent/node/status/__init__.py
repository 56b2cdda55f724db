"""What the running agent reports about itself to people and monitors: the health checks, the
gauges read at scrape time, and the HTTP endpoint serving /metrics and /health. It reads the
stages (link, store, exec, tasks, intake) it is given; only the app imports it."""
