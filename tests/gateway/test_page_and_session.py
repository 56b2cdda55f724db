"""The dashboard's doors on a real edge-gateway process: its files at `/` and `/static/` with the
page's CSP (and nothing outside them, however the path is spelled), and the cookie session: sign-in,
the cookie's attributes, the cookie accepted like a bearer token, the CSRF header rule, sign-out,
and each refusal with its code."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization

from gateway.static import PAGE_CSP
from tests.gateway.conftest import conforms, https_env, jwt_claims
from tests.support.gateway import GatewaySite, gateway_process

COMPUTE = {"algorithm": "stats", "parameters": {"signal": [1, 2, 3]}}
DASHBOARD = {"X-Edge-Dashboard": "1"}


def _web_dir(tmp: Path) -> Path:
    """A page of two files, and a secret beside (not inside) it that no path may reach."""
    web = tmp / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>fleet</title>")
    (web / "js" / "app.js").write_text("export const x = 1;\n")
    (web / ".hidden").write_text("dotfile")
    (tmp / "config.py").write_text("SECRET = 'outside the web root'\n")
    (web / "escape.txt").symlink_to(tmp / "config.py")
    return web


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (urllib would normalize some of it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_the_page_is_served_with_its_csp_and_nothing_outside_its_folder(
    gw_site: GatewaySite, tmp_path: Path
) -> None:
    gw = gw_site
    web = _web_dir(tmp_path)
    with gateway_process(gw, EDGE_GATEWAY_HTTP_WEB_DIR=str(web)):
        status, text, headers = gw.call("GET", "/")
        assert status == 200 and text == "<!doctype html><title>fleet</title>"
        assert headers["Content-Type"].startswith("text/html")
        assert headers["Content-Security-Policy"] == PAGE_CSP
        assert "script-src 'self'" in PAGE_CSP and "unsafe-inline" not in PAGE_CSP
        assert headers["Cache-Control"] == "no-cache" and headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY" and {"etag", "last-modified"} <= {
            h.lower() for h in headers
        }
        status, text, headers = gw.call("GET", "/static/js/app.js")
        assert status == 200 and text == "export const x = 1;\n"
        assert headers["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript")
        assert headers["Content-Security-Policy"] == PAGE_CSP
        status, _, _ = gw.call("GET", "/static/js/app.js", headers={"If-None-Match": headers["Etag"]})
        assert status == 304
        status, body, _ = gw.call("GET", "/static/missing.js")
        assert (status, body["error"]["code"]) == (404, "not_found")
        for path in (
            "/static/../config.py",
            "/static/%2e%2e/config.py",
            "/static/..%2fconfig.py",
            "/static/%2e%2e%2fconfig.py",
            "/static/js/../../config.py",
            "/static//" + str(tmp_path / "config.py").lstrip("/"),  # an absolute path
            "/static/%2F" + str(tmp_path / "config.py").lstrip("/"),
            "/static/js%5c..%5c..%5cconfig.py",
            "/static/escape.txt",  # a symbolic link out of the folder
            "/static/.hidden",
            "/static/js/%00app.js",
        ):
            status, body = raw_get(gw.port, path)
            assert status == 404 and b"outside the web root" not in body, (path, status, body)
            assert json.loads(body)["error"]["code"] == "not_found", path
        # the API stays behind its token, whatever the path's spelling
        for path in ("/static/../api/v1/tasks", "/api/v1/../static/js/app.js"):
            status, body = raw_get(gw.port, path)
            assert status in (401, 404) and b"tasks" not in body.split(b'"message"')[0], (path, body)
        assert gw.call("GET", "/api/v1/tasks")[0] == 401
        assert gw.call("GET", "/health")[0] == 200


def _cookie(headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """(the session cookie's value, its attributes, lower-case) from a Set-Cookie header."""
    name_value, *attributes = [part.strip() for part in headers["Set-Cookie"].split(";")]
    name, _, value = name_value.partition("=")
    assert name == "edge_session"
    pairs = {a.partition("=")[0].lower(): a.partition("=")[2] for a in attributes}
    return value, pairs


def test_sign_in_sets_an_httponly_strict_cookie_the_api_accepts(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gw.site.agent(), gateway_process(gw):
        before = time.time()
        status, body, headers = gw.call(
            "POST", "/api/v1/session", {"client_id": "webapp", "client_secret": gw.secrets["webapp"]}
        )
        assert status == 200 and body["client"] == "webapp" and body["roles"] == ["read", "submit"]
        assert before + 3500 < body["expires_at"] <= time.time() + 3600
        conforms("Session", body)
        token, attributes = _cookie(headers)
        assert {"httponly", "path", "samesite", "max-age"} <= set(attributes) and "secure" not in attributes
        assert attributes["samesite"] == "Strict" and attributes["path"] == "/"
        assert 3590 <= int(attributes["max-age"]) <= 3600
        assert headers["Cache-Control"] == "no-store"
        cookie = {"Cookie": f"edge_session={token}"}
        # the session answers for the cookie and for a bearer token alike
        status, again, _ = gw.call("GET", "/api/v1/session", headers=cookie)
        assert status == 200 and again == body
        assert gw.call("GET", "/api/v1/session", token=token)[1] == body
        # the cookie reads like a bearer token; a change needs the dashboard's header
        assert gw.call("GET", "/api/v1/tasks", headers=cookie)[0] == 200
        status, refused, _ = gw.call("POST", "/api/v1/compute", COMPUTE, headers=cookie)
        assert (status, refused["error"]["code"]) == (403, "csrf_header_missing")
        status, done, _ = gw.call("POST", "/api/v1/compute?wait=20", COMPUTE, headers={**cookie, **DASHBOARD})
        assert status == 200 and done["status"] == "completed" and done["client"] == "webapp"
        assert gw.call("POST", "/api/v1/compute", COMPUTE, token=gw.token("webapp"))[0] == 202  # bearer
        # a header of another value is no header
        bad = gw.call("POST", "/api/v1/compute", COMPUTE, headers={**cookie, "X-Edge-Dashboard": "yes"})
        assert bad[1]["error"]["code"] == "csrf_header_missing"
        # sign-out needs the header too, then clears the cookie
        assert (
            gw.call("DELETE", "/api/v1/session", headers=cookie)[1]["error"]["code"] == "csrf_header_missing"
        )
        status, _, headers = gw.call("DELETE", "/api/v1/session", headers={**cookie, **DASHBOARD})
        assert status == 204
        cleared, attributes = _cookie(headers)
        assert cleared in ("", '""') and attributes["max-age"] == "0" and "httponly" in attributes
    audit = [
        json.loads(line.split("gateway.audit: ", 1)[1])
        for line in gw.output().splitlines()
        if "gateway.audit: " in line
    ]
    sessions = [
        (e["method"], e.get("session"), e["client"], e.get("via"), e["status"])
        for e in audit
        if e["path"] == "/api/v1/session"
    ]
    assert sessions == [
        ("POST", "sign_in", "webapp", None, 200),
        ("DELETE", None, "webapp", "cookie", 403),  # refused before the route: no session step
        ("DELETE", "sign_out", "webapp", "cookie", 204),
    ]
    assert {"via": "cookie", "status": 403, "client": "webapp"}.items() <= audit[1].items()


def test_every_refused_session_says_why(gw_site: GatewaySite) -> None:
    gw = gw_site
    with gateway_process(gw):
        sign_in = "/api/v1/session"
        wrong = gw.call("POST", sign_in, {"client_id": "webapp", "client_secret": "guess"})
        assert (wrong[0], wrong[1]["error"]["code"]) == (401, "invalid_client") and "Set-Cookie" not in wrong[
            2
        ]
        gone = gw.call("POST", sign_in, {"client_id": "gone", "client_secret": gw.secrets["gone"]})
        assert (gone[0], gone[1]["error"]["code"]) == (401, "revoked_client")
        # JSON only: a form or text/plain could be sent by another site's page without a preflight
        form = f"client_id=webapp&client_secret={gw.secrets['webapp']}".encode()
        for kind in ("application/x-www-form-urlencoded", "text/plain"):
            status, body, _ = gw.call("POST", sign_in, raw=form, headers={"Content-Type": kind})
            assert (status, body["error"]["code"]) == (415, "unsupported_media_type"), kind
        assert gw.call("POST", sign_in, {"client_id": "webapp"})[1]["error"]["code"] == "invalid_request"
        # cookies that are not this gateway's live tokens: 401 with the reason, and cleared
        key = serialization.load_pem_private_key(
            (gw.site.tmp / "bundle-gw-1" / "data" / "token.key").read_bytes(), None
        )
        good = gw.token("webapp")
        head, _, sig = good.split(".")
        ops_claims = gw.token("ops").split(".")[1]
        cases = {
            "bad_signature": f"{head}.{ops_claims}.{sig}",  # ops' claims under webapp's signature
            "token_expired": jwt.encode(
                jwt_claims(exp=int(time.time()) - 120, iat=0, nbf=0), key, algorithm="EdDSA"
            ),
            "malformed_token": "not-a-jwt",
            "revoked_client": jwt.encode(jwt_claims(sub="gone"), key, algorithm="EdDSA"),
        }
        for code, cookie in cases.items():
            status, body, headers = gw.call(
                "GET", "/api/v1/session", headers={"Cookie": f"edge_session={cookie}"}
            )
            assert (status, body["error"]["code"]) == (401, code), code
            assert _cookie(headers)[1]["max-age"] == "0", code
        assert gw.call("GET", "/api/v1/session")[1]["error"]["code"] == "missing_token"
        # a reader's cookie, even with the header, may not submit
        status, _, headers = gw.call(
            "POST", sign_in, {"client_id": "viewer", "client_secret": gw.secrets["viewer"]}
        )
        viewer = {"Cookie": f"edge_session={_cookie(headers)[0]}", **DASHBOARD}
        status, body, _ = gw.call("POST", "/api/v1/compute", COMPUTE, headers=viewer)
        assert (status, body["error"]["code"]) == (403, "forbidden")
        assert gw.call("GET", "/api/v1/tasks", headers=viewer)[0] == 200


def test_the_cookie_is_secure_under_https(gw_site: GatewaySite, tmp_path: Path) -> None:
    gw = gw_site
    tls = https_env(gw, tmp_path)
    with gateway_process(gw, **tls):
        status, _, headers = gw.call(
            "POST", "/api/v1/session", {"client_id": "viewer", "client_secret": gw.secrets["viewer"]}
        )
        assert status == 200 and "secure" in _cookie(headers)[1]
        status, _, headers = gw.call("GET", "/api/v1/session", headers={"Cookie": "edge_session=x"})
        assert status == 401 and "secure" in _cookie(headers)[1]
