"""The session cookie of the dashboard (session.py sets it, middleware.py reads it): its name, the
header a cookie-authenticated unsafe request must carry, and its `Set-Cookie` form."""

from __future__ import annotations

from http.cookies import SimpleCookie

COOKIE = "edge_session"
CSRF_HEADER = "X-Edge-Dashboard"
#: Methods that change nothing: a cookie-authenticated request of any other needs CSRF_HEADER.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_header(value: str, max_age: int, secure: bool) -> str:
    """A `Set-Cookie` value: HttpOnly (no script reads it), SameSite=Strict (no other site's
    request carries it), the whole site's path, `Secure` on HTTPS; `max_age` 0 clears it."""
    jar: SimpleCookie = SimpleCookie()
    jar[COOKIE] = value
    morsel = jar[COOKIE]
    morsel["path"] = "/"
    morsel["max-age"] = str(max_age)
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if secure:
        morsel["secure"] = True
    return morsel.OutputString()
