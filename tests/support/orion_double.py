"""A strict HTTP double of Orion (NGSI v2 batch update and query) and an NGSI-LD broker (batch upsert), with faults.

Requests are validated by `tests.support.orion_rules` (Orion's status codes and error bodies); what
passes is applied to an in-memory entity store (latest state, as Orion's `append` leaves it: metadata
an update leaves out are kept) and every request is logged with its
headers and body. Faults are scripted per test: answer a status for N requests or until a time, hang,
require an X-Auth-Token, or require a bearer token from the double's own OAuth2 token endpoint
(`POST /oauth2/token`, client credentials). An HTTPS variant serves a certificate of a test CA
generated into a temporary directory and can require a client certificate (mTLS).

A path the double does not serve gets Orion's answer to it, whatever the method: 400 BadRequest
"Service not found. Check your URL as probably it is wrong." (`restService()` in Orion's
src/lib/rest/RestService.cpp; functional tests 0000_bad_requests, 1697_more_than_one_bad_input,
2527_crash_with_empty_uri_path) — not 404. A served path with another method gets Orion's 405.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import re
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDict

from tests.support import orion_rules

V2_UPDATE = "/v2/op/update"
V2_ENTITIES = "/v2/entities"  # the IoT Agent library sends a single measure here with ?options=upsert
V2_QUERY = "/v2/op/query"  # the mqtt uplink's confirmation reads what an IoT Agent wrote
V2_REGISTRATIONS = "/v2/registrations"  # the IoT Agents register the commands of a device here
LD_UPSERT = "/ngsi-ld/v1/entityOperations/upsert"
TOKEN_PATH = "/oauth2/token"
MAX_BODY = 1_048_576  # Orion's default -inReqPayloadMaxSize


class ManualClock:
    """Time that only moves when a test says so; shared by the uplink and the double."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedRequest:
    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    body: bytes
    status: int
    response: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(slots=True, kw_only=True)
class _Fault:
    status: int
    remaining: int | None  # requests still to answer this way; None = until `until`
    skip: int  # requests to let through before the fault starts
    until: float | None
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsMaterial:
    """PEM files of a throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_bundle: Path  # client certificate and key in one PEM file


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def make_tls_material(directory: Path) -> TlsMaterial:
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgegw test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName] | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf(
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client, client_key = leaf("gateway-test-001", ExtendedKeyUsageOID.CLIENT_AUTH, None)
    pem = serialization.Encoding.PEM
    m = TlsMaterial(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        client_bundle=directory / "client-bundle.pem",
    )
    m.ca_file.write_bytes(ca.public_bytes(pem))
    m.server_cert.write_bytes(server.public_bytes(pem))
    _write_key(m.server_key, server_key)
    m.client_cert.write_bytes(client.public_bytes(pem))
    _write_key(m.client_key, client_key)
    m.client_bundle.write_bytes(m.client_cert.read_bytes() + m.client_key.read_bytes())
    return m


def _append(current: dict[str, Any], entity: Mapping[str, Any]) -> None:
    """Write `entity`'s attributes into the stored `current` the way Orion's `append` does.

    An attribute's value and type are replaced; its metadata are merged: "existing metadata not
    included in the request are not touched in the attribute (i.e. they keep the previous value)"
    (Orion's manual, "Metadata update semantics"). Attributes the update leaves out are kept.
    """
    for name, attr in entity.items():
        if name in ("id", "type"):
            continue
        old = current.get(name)
        if isinstance(old, dict) and isinstance(attr, dict) and isinstance(old.get("metadata"), dict):
            merged = {**old["metadata"], **(attr.get("metadata") or {})}
            attr = {**attr, "metadata": merged}
        current[name] = attr


def _json(
    status: int, doc: Any, headers: dict[str, str] | None = None, content_type: str = "application/json"
) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type=content_type, headers=headers)


# Orion's bodies for a path it does not serve and for a method a path does not take, byte for byte
# (97 and 63 bytes of Content-Length in the functional tests)
SERVICE_NOT_FOUND = {"error": "BadRequest", "description": "Service not found. Check your URL as probably it is wrong."}
METHOD_NOT_ALLOWED = {"error": "MethodNotAllowed", "description": "method not allowed"}


@dataclass(slots=True)
class _OAuth:
    client_id: str
    client_secret: str
    expires_in: float
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (clock time)


class OrionDouble:
    """The double's server, state and fault script. Use `async with OrionDouble() as orion:`."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        tls: TlsMaterial | None = None,
        require_client_cert: bool = False,
        validate: bool = True,
        max_body: int = MAX_BODY,
        keep_log: bool = True,
    ) -> None:
        self.clock = clock
        self.tls = tls
        self.require_client_cert = require_client_cert
        self.validate = validate
        self.max_body = max_body
        self.keep_log = keep_log
        self.requests: list[LoggedRequest] = []
        # (Fiware-Service, Fiware-ServicePath, entity id) -> latest entity, v2 normalized form
        self.entities: dict[tuple[str, str, str], dict[str, Any]] = {}
        # (NGSILD-Tenant, entity id) -> latest entity, LD form
        self.ld_entities: dict[tuple[str, str], dict[str, Any]] = {}
        self.written: list[dict[str, Any]] = []  # every entity applied, in arrival order (v2 and LD)
        # (Fiware-Service, Fiware-ServicePath, registration id) -> registration as received
        self.registrations: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.token_fetches = 0
        self.update_count = 0
        self.url = ""
        self._faults: list[_Fault] = []
        self._hang_remaining = 0
        self._hang_until: float | None = None
        self._x_auth_token: str | None = None
        self._oauth: _OAuth | None = None
        self._ld_entity_faults: dict[str, tuple[int, str]] = {}
        self._ld_raw_errors: dict[str, Any] = {}
        self._ld_unreported: set[str] = set()
        self._refused_entities: dict[str, str] = {}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # ---- fault script -------------------------------------------------------------------------

    def fail(
        self, status: int = 503, *, count: int = 1, until: float | None = None, after: int = 0, body: Any = None
    ) -> None:
        """Answer `status` to `count` NGSI requests (or to all until clock time `until`), after letting `after` through."""
        doc = body if body is not None else {"error": "ServiceUnavailable", "description": "scripted fault"}
        self._faults.append(
            _Fault(
                status=status,
                remaining=None if until is not None else count,
                until=until,
                skip=after,
                body=orjson.dumps(doc),
            )
        )

    def refuse_entity(self, entity_id: str, description: str = "Invalid characters in attribute value") -> None:
        """Refuse (400 BadRequest, whole request) any v2 update holding `entity_id`, as a stricter platform would."""
        self._refused_entities[entity_id] = description

    def hang(self, count: int = 1, *, until: float | None = None) -> None:
        """Never answer the next `count` NGSI requests (or all until clock time `until`)."""
        self._hang_remaining = 0 if until is not None else count
        self._hang_until = until

    def require_x_auth_token(self, token: str) -> None:
        self._x_auth_token = token

    def require_oauth(self, client_id: str, client_secret: str, *, expires_in: float = 60.0) -> None:
        self._oauth = _OAuth(client_id, client_secret, expires_in)

    def revoke_tokens(self) -> None:
        """Forget every issued token, as an authorization server restart or key rotation does."""
        if self._oauth is not None:
            self._oauth.tokens.clear()

    def fail_ld_entity(self, entity_id: str, status: int, title: str) -> None:
        """Report `entity_id` as failed (with this status) in an upsert's 207 instead of writing it."""
        self._ld_entity_faults[entity_id] = (status, title)

    def ld_entity_error(self, entity_id: str, error: Any) -> None:
        """Answer `entity_id` in an upsert's 207 with `error` as given (any shape a broker sends), not writing it."""
        self._ld_raw_errors[entity_id] = error

    def leave_out_ld_entity(self, entity_id: str) -> None:
        """Neither write `entity_id` nor name it in the upsert's 207 (in neither `success` nor `errors`)."""
        self._ld_unreported.add(entity_id)

    def requests_to(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path == path]

    @property
    def arrivals(self) -> list[str]:
        return [e["id"] for e in self.written]

    # ---- server -------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._unserved])
        app.router.add_post(V2_UPDATE, self._v2_update)
        app.router.add_post(V2_ENTITIES, self._v2_create)
        app.router.add_post(V2_QUERY, self._v2_query)
        app.router.add_post(V2_REGISTRATIONS, self._v2_register)
        app.router.add_post(LD_UPSERT, self._ld_upsert)
        app.router.add_post(TOKEN_PATH, self._token)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        ctx = None
        if self.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.tls.server_cert), str(self.tls.server_key))
            if self.require_client_cert:
                ctx.load_verify_locations(cafile=str(self.tls.ca_file))
                ctx.verify_mode = ssl.CERT_REQUIRED
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if ctx else 'http'}://127.0.0.1:{port}"

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OrionDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- handlers -----------------------------------------------------------------------------

    @web.middleware
    async def _unserved(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """What Orion answers for a path it does not serve, or a method a served path does not take."""
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPMethodNotAllowed as exc:
            allow = ", ".join(sorted(exc.allowed_methods))
            return self._log(request, await request.read(), _json(405, METHOD_NOT_ALLOWED, headers={"Allow": allow}))
        except web.HTTPNotFound:
            return self._log(request, await request.read(), _json(400, SERVICE_NOT_FOUND))

    def _log(self, request: web.Request, body: bytes, resp: web.Response) -> web.Response:
        if self.keep_log:
            payload = resp.body if isinstance(resp.body, bytes) else b""
            self.requests.append(
                LoggedRequest(
                    method=request.method,
                    path=request.path,
                    query=request.query_string,
                    headers=CIMultiDict(request.headers),
                    body=body,
                    status=resp.status,
                    response=payload,
                )
            )
        return resp

    async def _gate(self, request: web.Request, body: bytes) -> web.Response | None:
        """Scripted faults, then size and credentials; None lets the request through to validation."""
        now = self.clock()
        if self._hang_remaining > 0 or (self._hang_until is not None and now < self._hang_until):
            self._hang_remaining = max(0, self._hang_remaining - 1)
            await self._release.wait()
            return web.Response(status=503)
        for fault in list(self._faults):
            if fault.until is not None and now >= fault.until:
                self._faults.remove(fault)
                continue
            if fault.skip > 0:
                fault.skip -= 1
                break
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            return web.Response(status=fault.status, body=fault.body, content_type="application/json")
        if len(body) > self.max_body:
            return _json(
                413,
                {
                    "error": "RequestEntityTooLarge",
                    "description": f"payload size: {len(body)}, max size supported: {self.max_body}",
                },
            )
        if self._x_auth_token is not None and request.headers.get("X-Auth-Token") != self._x_auth_token:
            # What a Wilma PEP proxy in front of Orion answers.
            return web.Response(
                status=401,
                text="Auth-token not found in request header"
                if "X-Auth-Token" not in request.headers
                else "Invalid token",
            )
        if self._oauth is not None:
            auth = request.headers.get("Authorization", "")
            # a Wilma PEP proxy takes the OAuth2 token in X-Auth-Token too
            token = auth[7:] if auth.startswith("Bearer ") else request.headers.get("X-Auth-Token", "")
            expiry = self._oauth.tokens.get(token)
            if expiry is None or now >= expiry:
                return _json(
                    401,
                    {"error": "invalid_token", "error_description": "missing, unknown or expired token"},
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
        return None

    async def _v2_update(self, request: web.Request) -> web.Response:
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        if self.validate:
            status, doc = orion_rules.validate_v2_update(request.headers, body)
        else:
            status, doc = 204, None
        if status != 204:
            return self._log(request, body, _json(status, doc))
        entities = orjson.loads(body)["entities"]
        for entity in entities:
            if entity["id"] in self._refused_entities:
                error = {"error": "BadRequest", "description": self._refused_entities[entity["id"]]}
                return self._log(request, body, _json(400, error))
        self.update_count += 1
        service = request.headers.get("Fiware-Service", "").lower()
        path = request.headers.get("Fiware-ServicePath", "/")
        for entity in entities:
            key = (service, path, entity["id"])
            current = self.entities.setdefault(key, {"id": entity["id"], "type": entity.get("type", "Thing")})
            _append(current, entity)
            self.written.append(entity)
        return self._log(request, body, web.Response(status=204))

    async def _v2_create(self, request: web.Request) -> web.Response:
        """`POST /v2/entities[?options=upsert]`: 204 for any upsert (created or updated, as Orion's API says),
        else 201 with a Location when created and 422 `Already Exists` when it exists."""
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        options = {o for o in ",".join(request.query.getall("options", [])).split(",") if o}
        if self.validate:
            status, doc = _validate_v2_create(request.headers, body, options)
            if status != 201:
                return self._log(request, body, _json(status, doc))
        entity = orjson.loads(body)
        if entity["id"] in self._refused_entities:
            error = {"error": "BadRequest", "description": self._refused_entities[entity["id"]]}
            return self._log(request, body, _json(400, error))
        service = request.headers.get("Fiware-Service", "").lower()
        path = request.headers.get("Fiware-ServicePath", "/")
        key = (service, path, entity["id"])
        current = self.entities.get(key)
        if current is not None and "upsert" not in options:
            return self._log(request, body, _json(422, {"error": "Unprocessable", "description": "Already Exists"}))
        self.update_count += 1
        created = current is None
        if current is None:
            current = self.entities[key] = {"id": entity["id"], "type": entity.get("type", "Thing")}
        _append(current, entity)  # an upsert of an existing entity is an append
        self.written.append(entity)
        if created and "upsert" not in options:
            location = f"/v2/entities/{entity['id']}?type={current['type']}"
            return self._log(request, body, web.Response(status=201, headers={"Location": location}))
        return self._log(request, body, web.Response(status=204))

    async def _v2_query(self, request: web.Request) -> web.Response:
        """`POST /v2/op/query`: the entities of the tenant and service paths matching the selectors, paged;
        normalized (metadata `{}` when none, as Orion renders it) or `keyValues`; `attrs` projects only."""
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        query = {k: request.query.getall(k) for k in request.query}
        status, doc, spec = orion_rules.validate_v2_query(request.headers, body, query)
        if spec is None:
            return self._log(request, body, _json(status, doc))
        service = request.headers.get("Fiware-Service", "").lower()
        found = [
            entity
            for (svc, path, _), entity in self.entities.items()
            if svc == service
            and _path_selected(path, spec.service_paths)
            and (not spec.entities or any(_selected(entity, s) for s in spec.entities))
        ]
        page = found[spec.offset : spec.offset + spec.limit]
        rendered = [_render_entity(e, spec.attrs, key_values="keyValues" in spec.options) for e in page]
        headers = {"Fiware-Total-Count": str(len(found))} if "count" in spec.options else None
        return self._log(request, body, _json(200, rendered, headers=headers))

    async def _v2_register(self, request: web.Request) -> web.Response:
        """`POST /v2/registrations`: 201 with the new registration's Location."""
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        status, doc = orion_rules.validate_v2_registration(request.headers, body)
        if status != 201:
            return self._log(request, body, _json(status, doc))
        registration_id = secrets.token_hex(12)  # Orion's ids are 24 hex digits (MongoDB ObjectIds)
        service = request.headers.get("Fiware-Service", "").lower()
        path = request.headers.get("Fiware-ServicePath", "/")
        self.registrations[(service, path, registration_id)] = orjson.loads(body)
        location = f"{V2_REGISTRATIONS}/{registration_id}"
        return self._log(request, body, web.Response(status=201, headers={"Location": location}))

    async def _ld_upsert(self, request: web.Request) -> web.Response:
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        if self.validate:
            status, doc = orion_rules.validate_ld_upsert(request.headers, body)
        else:
            status, doc = 204, None
        if status not in (201, 204, 207):
            return self._log(request, body, _json(status, doc, content_type="application/json"))
        entities = orjson.loads(body)
        refused = (
            {e["entityId"]: e for e in (doc or {}).get("errors", [])} if status == 207 and isinstance(doc, dict) else {}
        )
        errors = list(refused.values())
        success: list[str] = []
        created: list[str] = []
        tenant = request.headers.get("NGSILD-Tenant", "")
        for entity in entities:
            eid = entity["id"]
            if eid in refused:
                continue
            if eid in self._ld_unreported:
                continue
            if eid in self._ld_raw_errors:
                errors.append({"entityId": eid, "error": self._ld_raw_errors[eid]})
                continue
            fault = self._ld_entity_faults.get(eid)
            if fault is not None:
                kind = "BadRequestData" if fault[0] < 500 else "InternalError"
                problem = {"type": f"https://uri.etsi.org/ngsi-ld/errors/{kind}", "title": fault[1], "status": fault[0]}
                errors.append({"entityId": eid, "error": problem})
                continue
            key = (tenant, eid)
            if key not in self.ld_entities:
                created.append(eid)
            current = self.ld_entities.setdefault(key, {"id": eid, "type": entity["type"]})
            current.update({k: v for k, v in entity.items() if k not in ("id", "type")})
            self.written.append(entity)
            success.append(eid)
        self.update_count += 1
        if errors or len(success) < len(entities):  # an entity left out of the answer is a 207 too
            return self._log(request, body, _json(207, {"success": success, "errors": errors}))
        if created:
            return self._log(request, body, _json(201, created))
        return self._log(request, body, web.Response(status=204))

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.read()
        oauth = self._oauth
        if oauth is None:
            return self._log(request, body, web.Response(status=404))
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            client_id, client_secret = unquote_plus(user), unquote_plus(password)
        if form.get("grant_type") != "client_credentials":
            return self._log(request, body, _json(400, {"error": "unsupported_grant_type"}))
        if (client_id, client_secret) != (oauth.client_id, oauth.client_secret):
            return self._log(
                request,
                body,
                _json(401, {"error": "invalid_client", "error_description": "Invalid client credentials"}),
            )
        token = secrets.token_hex(16)
        oauth.tokens[token] = self.clock() + oauth.expires_in
        self.token_fetches += 1
        doc = {"access_token": token, "token_type": "Bearer", "expires_in": oauth.expires_in}
        return self._log(request, body, _json(200, doc))


def _path_selected(path: str, selected: tuple[str, ...]) -> bool:
    """Orion's service path scoping for queries: `/a` is that path only, `/a/#` it and below, `/#` all."""
    for wanted in selected:
        if wanted == "/#":
            return True
        if wanted.endswith("/#"):
            root = wanted[:-2]
            if path == root or path.startswith(root + "/"):
                return True
        elif path == wanted:
            return True
    return False


def _selected(entity: dict[str, Any], selector: dict[str, str]) -> bool:
    # POSIX regexec, as Orion uses it, finds a match anywhere unless the pattern is anchored
    if "id" in selector and entity["id"] != selector["id"]:
        return False
    if "idPattern" in selector and re.search(selector["idPattern"], entity["id"]) is None:
        return False
    if "type" in selector and entity.get("type") != selector["type"]:
        return False
    return "typePattern" not in selector or re.search(selector["typePattern"], entity.get("type", "")) is not None


def _render_entity(entity: dict[str, Any], attrs: tuple[str, ...] | None, *, key_values: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entity["id"], "type": entity.get("type", "Thing")}
    for name, attr in entity.items():
        if name in ("id", "type") or (attrs is not None and name not in attrs and "*" not in attrs):
            continue
        if key_values:
            out[name] = attr.get("value")
        else:
            out[name] = {"type": attr.get("type"), "value": attr.get("value"), "metadata": attr.get("metadata") or {}}
    return out


_CREATE_OPTIONS = frozenset({"upsert", "flowControl", "keyValues"})


def _validate_v2_create(headers: Mapping[str, str], body: bytes, options: set[str]) -> tuple[int, Any]:
    """(201, None) when Orion would accept this `POST /v2/entities` (one entity, same rules as a batch)."""
    rules = orion_rules
    try:
        unknown = sorted(options - _CREATE_OPTIONS)
        if unknown:
            raise rules._bad("Invalid value for URI param /options/")  # Orion names no value
        if "keyValues" in options:
            # the double stores normalized entities only; no caller of it sends keyValues
            raise rules._bad("the Orion double does not implement options=keyValues")
        rules._check_transport(headers, body, media=("application/json",))
        rules._check_tenant(rules._header(headers, "Fiware-Service"), strict=True)
        rules._check_service_path(rules._header(headers, "Fiware-ServicePath"), strict=True)
        try:
            doc = rules._parse(body)
        except ValueError:
            raise rules._v2_error(400, "ParseError", "Errors found in incoming JSON buffer") from None
        rules._check_v2_entity(doc, strict=True)
    except rules._Refused as refused:
        return refused.status, refused.body
    return 201, None


@pytest.fixture
async def orion_double() -> AsyncIterator[OrionDouble]:
    """A plain-HTTP double on 127.0.0.1, validating like Orion."""
    async with OrionDouble() as double:
        yield double


@pytest.fixture(scope="session")
def orion_tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("orion-tls"))


@pytest.fixture
async def orion_double_tls(orion_tls_material: TlsMaterial) -> AsyncIterator[OrionDouble]:
    """An HTTPS double with a test-CA certificate that requires a client certificate of the same CA."""
    async with OrionDouble(tls=orion_tls_material, require_client_cert=True) as double:
        yield double
