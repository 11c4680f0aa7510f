"""`/openapi.json` and an offline docs page: Swagger UI from npm (`swagger-ui-dist`, pinned in package.json), served
from node_modules like GraphiQL is (`gqlapi.graphiql`), never from a CDN. The page's Content-Security-Policy lets it
load nothing but this origin, so a stray external URL would fail visibly instead of leaking requests.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from oracle.api.openapi import document_bytes

NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
DIST = NODE_MODULES / "swagger-ui-dist"
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})  # a fixed allowlist
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'")

# Relative URLs: the page works at /docs and behind a proxy that mounts the oracle under a prefix.
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>carbonledger oracle API</title>
<link rel="icon" href="docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", validatorUrl: null, deepLinking: true,
                             defaultModelsExpandDepth: 1, tryItOutEnabled: false});
</script>
</body>
</html>
"""


def available() -> bool:
    return all((DIST / name).is_file() for name in ASSETS)


async def openapi(request: Request) -> Response:
    return Response(document_bytes(), media_type="application/json")


async def docs(request: Request) -> Response:
    if not available():
        return JSONResponse({"error": "docs_unavailable", "message": "swagger-ui-dist is not installed (npm install); "
                             "the document is at /openapi.json"}, status_code=503)
    return HTMLResponse(PAGE, headers={"content-security-policy": CSP})


async def docs_asset(request: Request) -> Response:
    name = request.path_params["path"]
    if name not in ASSETS or not available():  # never a path into the filesystem
        return JSONResponse({"error": "not_found", "message": "not found"}, status_code=404)
    return FileResponse(DIST / name, headers={"cache-control": "public, max-age=86400"})


def routes(ops: dict[str, str]) -> list[Route]:
    """The docs routes, at the paths the route table gives them (`ops`: operation id -> path)."""
    handlers = {"openapi": openapi, "docs": docs, "docs_asset": docs_asset}
    return [Route(ops[name], fn, methods=["GET"]) for name, fn in handlers.items()]
