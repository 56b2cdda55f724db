"""The demo's edge-gateway: the fleet's HTTP API on a free 127.0.0.1 port, an API client for it,
and a bearer token in `.demo/token`, so that one `curl` line printed at start works as it is; and
the dashboard page at `/`, with the credentials to sign in printed beside its address.
"""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DemoError
from .fleet import API_CLIENT, DASHBOARD_CLIENT, GATEWAY, DemoFleet

COMPUTE = {
    "algorithm": "matrix_multiply",
    "parameters": {"matrix_a": [[1, 2], [3, 4]], "matrix_b": [[5, 6], [7, 8]]},
    "timeout_seconds": 30,
}


def gateway_env(demo: DemoFleet, port: int, node: str) -> dict[str, str]:
    return {
        "EDGE_GATEWAY_HTTP_PORT": str(port),
        "EDGE_GATEWAY_TASKS_DEFAULT_TARGET": node,
        "EDGE_GATEWAY_STORE_DATA_DIR": str(demo.root / GATEWAY / "data"),
    }


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def fetch_token(demo: DemoFleet, port: int) -> Path:
    """POST /api/v1/token with the demo client's secret; the token goes to `.demo/token` (0600)."""
    secret = demo.api_secret.read_text().strip()
    body = json.dumps({"client_id": API_CLIENT, "client_secret": secret}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/token", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.load(response)["access_token"]
    except (OSError, ValueError, KeyError) as exc:
        raise DemoError(f"the gateway gave the demo no token: {exc}") from None
    path = demo.root / "token"
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return path


def curl_line(port: int, token_file: Path) -> str:
    """A command a user pastes as it is: the original specification's compute request."""
    return (
        f'curl -s -H "Authorization: Bearer $(cat {shlex.quote(str(token_file))})"'
        " -H 'Content-Type: application/json'"
        f" -d {shlex.quote(json.dumps(COMPUTE, separators=(',', ':')))}"
        f" 'http://127.0.0.1:{port}/api/v1/compute?wait=10'"
    )


def dashboard_line(demo: DemoFleet, port: int) -> str:
    """The page's address and its sign-in: a throwaway demo fleet's admin client, so the secret is
    printed (it is also in `.demo/demo-admin.secret`)."""
    secret = demo.dashboard_secret.read_text().strip()
    return f"dashboard: http://127.0.0.1:{port}/   client id: {DASHBOARD_CLIENT}   secret: {secret}"
