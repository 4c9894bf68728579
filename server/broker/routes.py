"""The broker's CA certificate, public: devices and installers fetch it without signing in."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Response

from server.broker.pki import PkiError, ca_pem
from server.deps import SettingsDep
from server.openapi import problems

router = APIRouter(tags=["broker"])
PEM_TYPE = "application/x-pem-file"


@router.get(
    "/broker/ca.pem",
    response_class=Response,
    responses=problems(404, 503)
    | {200: {"content": {PEM_TYPE: {}}, "description": "the CA certificate (PEM)"}},
)
async def broker_ca(settings: SettingsDep) -> Response:
    """The CA certificate that devices must trust to reach the broker over TLS."""
    try:
        # Creates the private CA on first use (key generation and file writes: a thread).
        pem = await asyncio.to_thread(ca_pem, settings)
    except PkiError as exc:
        raise HTTPException(503, detail=str(exc)) from None
    if pem is None:
        raise HTTPException(
            404,
            detail="the broker has no private CA: its certificate is from a public CA "
            "(LOA_MQTT_TLS_CERTFILE) or TLS is off (LOA_MQTT_TLS_PORT=0)",
        )
    return Response(pem, media_type=PEM_TYPE)
