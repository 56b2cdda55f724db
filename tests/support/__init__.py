"""Test support: real services started on free 127.0.0.1 ports (no mocks of MQTT)."""
