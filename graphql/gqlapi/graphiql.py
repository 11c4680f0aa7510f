"""GraphiQL served offline: strawberry's page points at unpkg.com; we rewrite those URLs to assets shipped by
npm (package.json pins the same versions) so GraphiQL works on machines and networks without a CDN.
Falls back to strawberry's CDN page when node_modules is absent (e.g. a pip-only install)."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
PREFIX = "/graphiql-assets"

# unpkg URL in strawberry's template -> file under node_modules
ASSETS = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react/umd/react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js-cookie/dist/js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql/graphiql.min.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": "@graphiql/plugin-explorer/dist/style.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql/graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": "@graphiql/plugin-explorer/dist/index.umd.js",
}
_ALLOWED = frozenset(ASSETS.values())


def available() -> bool:
    return all((NODE_MODULES / rel).is_file() for rel in ASSETS.values())


def offline_html(html: str) -> str:
    """Point every CDN asset at our own route; drop SRI/crossorigin attributes that only apply to the CDN."""
    if not available():
        return html
    for url, rel in ASSETS.items():
        html = html.replace(url, f"{PREFIX}/{rel}")
    html = re.sub(r'\s+integrity="[^"]*"', "", html)
    return re.sub(r"\s+crossorigin(?=[\s>])", "", html)


async def _asset(request) -> Response:  # type: ignore[no-untyped-def]
    rel = request.path_params["path"]
    if rel not in _ALLOWED:  # a fixed allowlist: never a path into the filesystem
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(NODE_MODULES / rel, headers={"cache-control": "public, max-age=86400"})


def asset_routes() -> list[Route]:
    return [Route(PREFIX + "/{path:path}", _asset)]
