"""The web console: one HTML shell at `/` and its static ES modules and CSS under `/console/static/`.

No build step and no third-party code: the files in `static/` are served as they are in the
repository (and in the wheel). The console is a client of the public API (`/api/v1`) with the
key the user signs in with; these routes serve only files, hold no data and need no key.

Caching: the files keep their plain names (no build step fingerprints them), so every answer says
`Cache-Control: no-cache` and carries an `ETag`: a browser revalidates each file and gets a
`304 Not Modified` with no body while the file is unchanged, so a new server version is seen at
once and an unchanged one costs one small round trip per file.

Every answer carries a strict `Content-Security-Policy`: scripts, styles and connections from this
origin only, no inline script or style, no framing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "STATIC_URL", "routes"]

STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_URL: Final = "/console/static"
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _ConsoleFiles(StaticFiles):
    """Starlette's static files (ETag, Last-Modified, 304s) with the console's headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


async def _shell(request: Request) -> Response:
    """The HTML shell; the client-side router reads the URL's hash (`#/runs/<id>`), so this one
    address serves every page of the console."""
    response = FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")
    response.headers.update(_HEADERS)
    return response


def routes() -> list[Route | Mount]:
    """The console's routes, to append to the app's route table (public on purpose: files only)."""
    return [
        Route("/", _shell, methods=["GET"], name="console"),
        Mount(STATIC_URL, app=_ConsoleFiles(directory=STATIC_DIR), name="console-static"),
    ]
