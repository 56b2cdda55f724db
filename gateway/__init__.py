"""edge-gateway: the fleet's HTTP API (issue 18). It stands beside the broker, speaks MQTT to the
agents as one more fleet identity (`edge-provision add gateway NAME`), and turns HTTP requests into
signed tasks and verified results into JSON.

The path of a request, one module each:

    config.py    gateway.toml + EDGE_GATEWAY_* (the project's one settings loader)
    clients.py   the API clients (api-clients.json of the bundle: names, roles, hashed secrets)
    tokens.py    POST /api/v1/token: short-lived EdDSA JWTs; every other route checks one
    errors.py    ApiError: what an HTTP client sees when it is refused

It imports `agent.common`, `agent.protocol` and `native` (the kernels' parameter checks), never
the agent process (`agent.node`) nor `provisioning`.
"""
