"""The dashboard's files (`gateway/web/`, package data) at `/` and `/static/{path}`, public.

    StaticFiles(Path(...)).add_to(app)      # GET / -> index.html, GET /static/app.js -> app.js

Only regular files inside the root are served: a name with an empty segment or one that starts
with a dot (`.`, `..`, `.git`), a backslash or a NUL is refused before the file system is asked,
and the resolved path (symbolic links followed) must still lie inside the root, so neither
`../config.py` nor its encodings (`%2e%2e/`, `..%2f`, which the router decodes first) nor `//etc`
reach a file outside; every refusal is the same 404 as a missing file. Answers carry
`Cache-Control: no-cache` (the browser revalidates with the ETag / Last-Modified aiohttp's
FileResponse sets) and the page's Content-Security-Policy: no inline script or style, nothing from
another origin, no framing.

Thread rules: handlers run on the HTTP loop; FileResponse reads the file in aiohttp's executor.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .errors import ApiError

#: The packaged page.
WEB_ROOT = Path(__file__).resolve().parent / "web"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-cache",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: The route patterns served without a token (middleware.py's public routes).
ROUTES = ("/", "/static/{path:.+}")


class StaticFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def add_to(self, app: web.Application) -> None:
        app.router.add_get(ROUTES[0], self.index)
        app.router.add_get(ROUTES[1], self.file)

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._serve("index.html")

    async def file(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request.match_info["path"])

    def _serve(self, name: str) -> web.FileResponse:
        path = self.resolve(name)
        if path is None:
            raise ApiError(404, "not_found", f"no file {name!r} in the dashboard's files")
        return web.FileResponse(path, headers=PAGE_HEADERS)

    def resolve(self, name: str) -> Path | None:
        """The file `name` (a path relative to the root, already percent-decoded) names, or None
        when it is not a regular file inside the root."""
        parts = name.split("/")
        if any(p == "" or p.startswith(".") for p in parts) or "\\" in name or "\x00" in name:
            return None
        try:
            path = self.root.joinpath(*parts).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, a symlink loop, a name the OS refuses
            return None
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path
