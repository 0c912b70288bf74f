"""The OpenAPI 3.1 document of the HTTP API, generated from the payload
models (actors/payloads.py): one operation per capability method, its
request body the method's payload schema, as msgspec writes it (JSON
Schema 2020-12, which OpenAPI 3.1 uses). And the page `/docs` shows it on.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from actors.http.problems import HTTP_KINDS, STATUS_BY_KIND, Problem
from actors.messages import InvokeResult
from actors.payloads import METHODS

__all__ = ["SWAGGER_UI", "SWAGGER_UI_CSS_SRI", "SWAGGER_UI_JS_SRI", "DocsPage", "docs_page", "openapi_document"]

_REF = "#/components/schemas/{name}"

_HEADERS: list[dict[str, Any]] = [
    {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 256},
     "description": "A repeat within the dedupe window returns the first result and delivers nothing again. "
                    "A send without one gets a key made by the gateway, returned in the result."},
    {"name": "X-Dry-Run", "in": "header", "required": False, "schema": {"type": "boolean"},
     "description": "true: reach the adapter but send nothing. Default: the config's dry_run."},
    {"name": "X-Deadline-S", "in": "header", "required": False, "schema": {"type": "number", "exclusiveMinimum": 0},
     "description": "The overall deadline of the request in seconds. Default: the config's routing.deadline_s."},
    {"name": "traceparent", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 256},
     "description": "W3C trace context: with telemetry.traces on, the request's trace continues this one; the "
                    "answer's traceparent names the gateway's span of the request."},
]


def _problem(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/problem+json": {"schema": {"$ref": _REF.format(name="Problem")}}}}
    if retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds until a retry may succeed",
                                          "schema": {"type": "integer", "minimum": 1}}}
    return out


def _statuses() -> dict[int, list[str]]:
    """Each failure status with the kinds that produce it."""
    by_status: dict[int, list[str]] = {}
    for kind, (status, _) in [*STATUS_BY_KIND.items(), *HTTP_KINDS.items()]:
        if kind not in ("not_found", "method_not_allowed", "internal_error"):
            by_status.setdefault(status, []).append(kind)
    return by_status


def _operation(capability: str, method: str, payload_ref: dict[str, Any], idempotent: bool) -> dict[str, Any]:
    ok = {"application/json": {"schema": {"$ref": _REF.format(name="InvokeResult")}}}
    responses: dict[str, Any] = {
        "200": {"description": "Served: the InvokeResult (`value` is the method's result)", "content": ok},
        "202": {"description": "Queued in the outbox: it will be delivered once, when a provider is back "
                               "(`value.outbox_id`)", "content": ok},
    }
    for status, kinds in sorted(_statuses().items()):
        responses[str(status)] = _problem("kind: " + ", ".join(kinds), retry_after=status in (429, 503))
    return {
        "operationId": f"{capability}.{method}",
        "summary": f"{method} through the {capability} router",
        "description": ("Idempotent: safe to send again." if idempotent else
                        "Delivers something: send it again only with the same Idempotency-Key."),
        "tags": [capability],
        "parameters": _HEADERS,
        "requestBody": {"required": True, "content": {"application/json": {"schema": payload_ref}}},
        "responses": responses,
    }


def openapi_document(capabilities: Sequence[str], *, title: str = "aicmo-gateway",
                     version: str = "0.1.0") -> dict[str, Any]:
    methods = [spec for cap in capabilities for spec in METHODS.get(cap, {}).values()]
    refs, components = msgspec.json.schema_components(
        [*(spec.payload for spec in methods), InvokeResult, Problem], ref_template=_REF)
    paths: dict[str, Any] = {}
    for spec, ref in zip(methods, refs, strict=False):
        paths[f"/v1/{spec.capability}/{spec.name}"] = {"post": _operation(spec.capability, spec.name, ref, spec.idempotent)}
    paths["/v1/status"] = {"get": {
        "operationId": "status", "summary": "Every capability with its ranked providers and their health",
        "responses": {"200": {"description": "the status report (as `aicmo-gateway status --json`)",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      "401": _problem("kind: unauthorized")}}}
    paths["/v1/events/{capability}/{provider}"] = {"post": {
        "operationId": "delivery_events", "security": [],
        "summary": "A provider's signed delivery events (SendGrid Event Webhook, Mailgun webhooks), in its own format",
        "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                       for n in ("capability", "provider")],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
        "responses": {"200": {"description": "stored (events of messages the gateway does not know too)",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      "401": _problem("a missing, wrong, stale or replayed signature: nothing stored"),
                      "404": _problem("no such provider takes delivery events here"),
                      "413": _problem("the body is too large"),
                      "503": _problem("kind: store_unavailable (the provider retries)", retry_after=True)}}}
    paths["/v1/requests/{id}"] = {"get": {
        "operationId": "request_timeline",
        "summary": "A request's timeline by idempotency key or request id: attempts, skips, delivery events",
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the timeline (as `aicmo-gateway trace ID --json`)",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      "401": _problem("kind: unauthorized"),
                      "404": _problem("kind: not_found: nothing is known of it")}}}
    paths["/healthz"] = {"get": {
        "operationId": "healthz", "summary": "200 when every router answers", "security": [],
        "responses": {"200": {"description": "every router answers",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      "503": _problem("kind: gateway_unavailable", retry_after=True)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "One call per capability, kept working across many providers. Failures are "
                                "RFC 9457 problem documents carrying the gateway's error `kind`."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "one of the config's http.api_keys"}}},
        "security": [{"bearer": []}],
    }


# Swagger UI, pinned to one release with the files' Subresource Integrity
# hashes (sha384 of swagger-ui-dist 5.35.0 as the npm registry ships it, which
# jsDelivr serves unchanged): a changed file on the CDN is refused by the
# browser instead of running with the page's access to the API key.
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
SWAGGER_UI_JS_SRI = "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9"
SWAGGER_UI_CSS_SRI = "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I"


class DocsPage(NamedTuple):
    html: str
    csp: str           # the Content-Security-Policy header the page is served with


def docs_page(openapi_url: str = "/openapi.json", title: str = "aicmo-gateway HTTP API") -> DocsPage:
    """Swagger UI for the document: pinned assets with SRI, the API key
    never persisted in the browser's storage (no `persistAuthorization`),
    and a Content-Security-Policy that lets only those assets and the one
    inline script run, and the page call only this origin."""
    script = f"SwaggerUIBundle({{url: {json.dumps(openapi_url)}, dom_id: \"#swagger-ui\"}});"
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css" integrity="{SWAGGER_UI_CSS_SRI}" crossorigin="anonymous">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER_UI}/swagger-ui-bundle.js" integrity="{SWAGGER_UI_JS_SRI}" crossorigin="anonymous"></script>
<script>{script}</script>
<noscript>The API's description is at <a href="{html.escape(openapi_url)}">{html.escape(openapi_url)}</a>.</noscript>
</body>
</html>
"""
    csp = (f"default-src 'none'; script-src {SWAGGER_UI}/swagger-ui-bundle.js 'sha256-{script_hash}'; "
           f"style-src {SWAGGER_UI}/swagger-ui.css 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return DocsPage(page, csp)
