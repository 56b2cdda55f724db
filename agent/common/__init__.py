"""What every part of the project shares: the error base and the journal engine.

It imports nothing else of the project except `agent.fileio` (atomic writes), so the agent,
the broker and provisioning can all build on it.
"""
