"""What the agent publishes: results, events and rejections signed (once, while their commit
syncs), the outbox of results not yet acknowledged by the broker, presence and heartbeats.
May import: link, store, agent.protocol, agent.common, errors."""
