"""The OpenAPI document tells the truth: one error model and every status a route answers.

Codes that follow from how a route is built are added here for every route at once: 401, 403
and 503 (the sign-in reads the database) for a signed-in route, 404 when it names an object by
id, 422 when it takes input, 409 when a signed-in route writes (the integrity handler).
A route declares the rest itself with `responses=problems(...)`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

REF = "#/components/schemas/"
WRITES = frozenset({"post", "put", "patch", "delete"})
REASONS = {
    304: "Not modified: the ETag in If-None-Match is current.",
    400: "The request body could not be read (an interrupted or malformed upload).",
    401: "Not signed in, the session has expired, or wrong credentials.",
    403: "Signed in, but your role or reach does not allow this.",
    404: "No such object, or one outside your reach (the two answer alike).",
    409: "Conflicts with the object's state or with existing data.",
    410: "The object exists but its stored file is gone.",
    413: "Too large.",
    415: "Unsupported media type.",
    422: "Invalid input: `detail` says what in a sentence, `errors` lists the fields at fault.",
    429: "Too many failed sign-ins; retry after the Retry-After header's seconds.",
    503: "The database is busy or unreachable, or the MQTT link this needs is down.",
}


class ErrorItem(BaseModel):
    """One field at fault in a 422."""

    loc: list[str | int]
    msg: str


class ErrorOut(BaseModel):
    """Every error answer: a human-readable sentence; a 422 also lists the fields at fault."""

    detail: str
    errors: list[ErrorItem] | None = None


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the error answers a route gives beyond those derived for every route."""
    return {code: {"model": ErrorOut, "description": REASONS[code]} for code in codes}


def _error_response(code: int) -> dict[str, Any]:
    return {
        "description": REASONS[code],
        "content": {"application/json": {"schema": {"$ref": f"{REF}ErrorOut"}}},
    }


def _id_properties(schema: Any, components: dict[str, Any], seen: set[str]) -> set[str]:
    """Names of the integer properties called *_id or *_ids in a schema, following $refs."""
    names: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF) and ref not in seen:
            seen.add(ref)
            names |= _id_properties(components.get(ref[len(REF) :]), components, seen)
        for name, prop in schema.get("properties", {}).items():
            if name.endswith(("_id", "_ids")) and '"integer"' in json.dumps(prop):
                names.add(name)
        for value in schema.values():
            names |= _id_properties(value, components, seen)
    elif isinstance(schema, list):
        for value in schema:
            names |= _id_properties(value, components, seen)
    return names


def _derived(method: str, op: dict[str, Any], components: dict[str, Any]) -> set[int]:
    params, body = op.get("parameters", []), op.get("requestBody", {})
    signed_in = bool(op.get("security"))  # sign-in reads the database, hence 503
    codes = {401, 403, 503} if signed_in else set()
    if params or body:
        codes.add(422)
    if body:
        codes.add(400)  # bytes that are not text (JSON bodies) or not a form
    by_id = _id_properties({"properties": {p["name"]: p for p in params}}, components, set())
    if by_id or any(p["in"] == "path" for p in params) or _id_properties(body, components, set()):
        codes.add(404)
    if signed_in and method in WRITES:
        codes.add(409)  # the integrity handler: a duplicate or a reference still in use
    return codes


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace FastAPI's list-shaped 422 model with ErrorOut and add the derived codes."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorOut.model_json_schema(ref_template=REF + "{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorOut"] = error_schema
    for operations in schema.get("paths", {}).values():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            for code in _derived(method, op, components):
                if str(code) not in responses or code == 422:
                    responses[str(code)] = _error_response(code)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve the corrected document at /openapi.json (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
