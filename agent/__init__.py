"""mqtt-edge-agent: the edge agent and the protocol library its clients share.

The protocol library (`agent.protocol`) is importable without starting an agent: devices,
dashboards, provisioning and tests use it to build, sign, decode and verify messages.
"""

__version__ = "0.1.0"
