"""The agent's MQTT connection (paho): connect, subscribe, receive into the intake's queue,
publish and acknowledge in order; paho's reads and writes batched (pahoio) and its decoding made
cheap (pahofast). May import: agent.common, agent.protocol, agent.node.errors."""
