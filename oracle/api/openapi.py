"""The oracle's OpenAPI 3.1 document, generated from the route table (`oracle.api.routes`) and the wire models
(`oracle.api.models`, JSON Schema 2020-12 from pydantic: requests in validation mode, answers in serialization mode).
Served at /openapi.json; committed as oracle/openapi.json, which a test keeps fresh:

    python -m oracle.api.openapi --write      # regenerate oracle/openapi.json
    python -m oracle.api.openapi --check      # exit 1 when it is stale

Nothing in it comes from the settings: no token, secret or address of a deployment can end up in it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import core
from oracle.api.routes import ROUTES, Answer, Op

COMMITTED = Path(__file__).resolve().parents[1] / "openapi.json"

INFO = """The carbonledger oracle turns off-chain facts (Stripe and M-Pesa payments, IoT readings, merchant settlements,
verifier approvals) into signed on-chain writes, exactly once: every write endpoint verifies, validates and records
(the provider event and the write intent, in one database transaction) before it answers 2xx.

- **Errors** are JSON `{"error": <code>, "message": <text>}` with a 4xx or 5xx status; each response below lists its
  codes. A refused request has changed nothing. Unknown paths answer 404 `not_found`, wrong methods 405
  `method_not_allowed` (no redirects: a path may hold a secret).
- **Bodies** are JSON objects (`Content-Type: application/json`), at most `oracle.max_body_bytes` (413 beyond, 415
  for another type); numbers are checked by bounded parsers: integers may be sent as JSON integers or decimal
  strings.
- **Limits**, per client (its address, or the one a trusted proxy names): `oracle.rate_limit` on every route,
  `oracle.webhook_rate_limit` on /webhooks/*, and `oracle.auth_failure_limit` failed authentications, past which
  every authenticated route answers 429 before looking at the credential. 429 carries `Retry-After`.
- **Credentials**: bearer tokens (merchants, verifiers, operators: `oracle.*_tokens`), Stripe's signature, a
  device's HMAC of the raw body, and the M-Pesa callback's secret path segment. Webhook signatures are checked on
  the raw bytes before the body is parsed.
"""

SECURITY = {
    "merchantToken": {"type": "http", "scheme": "bearer",
                      "description": "a merchant's token (`oracle.merchant_tokens`); the merchant acts on its own "
                                     "orders and pushes only"},
    "verifierToken": {"type": "http", "scheme": "bearer",
                      "description": "a verifier's token (`oracle.verifier_tokens`); never approves its own request"},
    "operatorToken": {"type": "http", "scheme": "bearer",
                      "description": "an operator's token (`oracle.operator_tokens`): reads every intent in full"},
    "stripeSignature": {"type": "apiKey", "in": "header", "name": "Stripe-Signature",
                        "description": "Stripe's webhook signature (`t=…,v1=…`) over the raw body, with one of "
                                       "`oracle.stripe_webhook_secrets`"},
    "deviceSignature": {"type": "apiKey", "in": "header", "name": "X-Signature",
                        "description": "hex HMAC-SHA256 of the raw body with the key of the device named by "
                                       "`X-Device-Id` (`oracle.iot_device_keys`)"},
}
TAGS = [{"name": "payments", "description": "Stripe and M-Pesa: a payment becomes one on-chain write, after checks"},
        {"name": "iot", "description": "signed device readings, anchored on chain as Merkle roots"},
        {"name": "settlements", "description": "merchants' QR orders and their settlement"},
        {"name": "verifications", "description": "four-eyes verification of credits, then the mint"},
        {"name": "intents", "description": "the status of on-chain writes"},
        {"name": "ops", "description": "health, readiness and metrics"},
        {"name": "docs", "description": "this document and its page"}]
HEADERS = {"Retry-After": {"description": "seconds until the client's window admits it again",
                           "schema": {"type": "integer", "minimum": 0}}}


def _examples(model: type[BaseModel]) -> list[Any]:
    extra = model.model_config.get("json_schema_extra")
    return list(extra.get("examples", [])) if isinstance(extra, dict) else []


def _answer(a: Answer, refs: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": a.description}
    if a.headers:
        out["headers"] = {h: HEADERS[h] for h in a.headers}
    if a.model is None:
        schema: dict[str, Any] = {"type": "object"} if a.media == "application/json" else {"type": "string"}
        out["content"] = {a.media: {"schema": schema}}
        return out
    schema = refs[(a.model, "serialization")]
    if a.codes:  # the error codes this response may carry, as part of its schema
        schema = {"allOf": [schema, {"properties": {"error": {"enum": list(a.codes)}}}]}
    out["content"] = {a.media: {"schema": schema}}
    return out


def _operation(op: Op, refs: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.id, "tags": [op.tag], "summary": op.summary,
                           "description": op.description.strip()}
    if op.params:
        out["parameters"] = [{"name": p.name, "in": p.where, "required": p.required, "description": p.description,
                              "schema": p.schema, **({"example": p.example} if p.example is not None else {})}
                             for p in op.params]
    if op.body is not None:
        content: dict[str, Any] = {"schema": refs[(op.body, "validation")]}
        if _examples(op.body):
            content["example"] = _examples(op.body)[0]
        out["requestBody"] = {"required": True, "content": {"application/json": content}}
    out["responses"] = {str(status): _answer(a, refs) for status, a in op.responses.items()}
    if op.security:
        out["security"] = [{name: []} for name in op.security] + ([{}] if op.anonymous else [])
    return out


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the oracle serves."""
    keys = [(op.body, "validation") for op in ROUTES if op.body is not None]
    keys += [(a.model, "serialization") for op in ROUTES for a in op.responses.values() if a.model is not None]
    refs, defs = models_json_schema(list(dict.fromkeys(keys)), ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for op in ROUTES:
        paths.setdefault(op.openapi_path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "carbonledger oracle", "version": core.__version__, "description": INFO},
        "tags": TAGS,
        "paths": paths,
        "components": {"schemas": dict(sorted(defs.get("$defs", {}).items())), "securitySchemes": SECURITY},
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as served and committed (built once per process)."""
    return (json.dumps(document(), indent=2, ensure_ascii=False) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Print, write or check the oracle's OpenAPI document.")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {COMMITTED.name} next to the oracle package")
    group.add_argument("--check", action="store_true", help="exit 1 when the committed document is stale")
    args = ap.parse_args(argv)
    text = document_bytes()
    if args.write:
        COMMITTED.write_bytes(text)
    elif args.check:
        if not COMMITTED.is_file() or COMMITTED.read_bytes() != text:
            print(f"{COMMITTED} is stale: python -m oracle.api.openapi --write", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text.decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
