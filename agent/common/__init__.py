"""What every part of the project shares: the error base, the one settings loader, the `[mqtt]`
section and its TLS context, TOML, times and durations, atomic writes, the journal engine, the
`$7$` password hashes and a token bucket.

It imports nothing else of the project, so the protocol library, the agent, the tools, the broker
and provisioning can all build on it.
"""
