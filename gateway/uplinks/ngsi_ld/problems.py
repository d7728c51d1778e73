"""What an NGSI-LD broker's error for one entity (in a 207 Multi-Status answer) means for that record.

ProblemDetails (RFC 7807, ETSI GS CIM 009 5.5.3) make only `type` mandatory, and brokers differ:
Orion-LD sends `type`, `title`, `status` and sometimes `detail`; other brokers leave `status` out;
older Stellio versions sent `"error": ["<message>", ...]`, and some send a plain string. The error
`type` decides where it is known, else the numeric `status`; an error with neither (a title, strings)
is UNCLASSIFIED and the uplink decides after seeing the same one repeatedly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway import redact

MAX_TEXT = 300

# The error types of ETSI GS CIM 009 ("Mapping of error types to HTTP status codes") and those
# Stellio and Orion-LD send besides. About the entity itself: sending it again gives the same answer.
REJECT_TYPES = frozenset(
    {
        "InvalidRequest",
        "BadRequestData",
        "AlreadyExists",
        "Conflict",
        "OperationNotSupported",
        "ResourceNotFound",
        "UnprocessableEntity",
    }
)
# About the broker, its dependencies or our request (tenant, media type, rights): the entity may pass later.
RETRY_TYPES = frozenset(
    {
        "InternalError",
        "LdContextNotAvailable",
        "BadGateway",
        "GatewayTimeout",
        "NonexistentTenant",
        "NoMultiTenantSupport",
        "AccessDenied",
        "NotImplemented",
        "UnsupportedMediaType",
        "NotAcceptable",
        "TooComplexQuery",
        "TooManyResults",
    }
)
# 4xx statuses that are about our credentials or the broker's load, not the entity
_RETRY_4XX = frozenset({401, 403, 408, 429})


class Verdict(enum.Enum):
    REJECT = "reject"  # about the entity: dead-letter it
    RETRY = "retry"  # about the broker or the request: try again later
    UNCLASSIFIED = "unclassified"  # neither a known type nor a status says which


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    verdict: Verdict
    text: str  # the broker's words, for the dead letter's reason and the log


def _kind(value: object) -> str:
    # full URIs, bare names, and a stray trailing blank (seen in the wild) all name the same type
    return value.strip().rsplit("/", 1)[-1] if isinstance(value, str) else ""


def _status(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _clip(text: str) -> str:
    # masked before it is cut: the far side may echo our token, and half a token is not recognised
    text = " ".join(redact.text(text).split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def problem_text(problem: dict[str, object], status: int | None = None) -> str:
    """`HTTP 400 BadRequestData: <title> - <detail>`, leaving out what the problem does not say."""
    kind = _kind(problem.get("type"))
    code = _status(problem.get("status"))
    code = code if code is not None else status
    words = " - ".join(w for w in (_clip(str(problem.get(k) or "")) for k in ("title", "detail")) if w)
    head = " ".join(p for p in (f"HTTP {code}" if code is not None else "", kind) if p)
    return _clip(f"{head}: {words}" if head and words else head or words or repr(problem))


def classify(error: object) -> Problem:
    """The verdict on one entity's `error` value, whatever its shape."""
    if isinstance(error, dict):
        text = problem_text(error)
        kind = _kind(error.get("type"))
        if kind in REJECT_TYPES:
            return Problem(verdict=Verdict.REJECT, text=text)
        if kind in RETRY_TYPES:
            return Problem(verdict=Verdict.RETRY, text=text)
        status = _status(error.get("status"))
        if status is None:
            return Problem(verdict=Verdict.UNCLASSIFIED, text=text)
        reject = 400 <= status < 500 and status not in _RETRY_4XX
        return Problem(verdict=Verdict.REJECT if reject else Verdict.RETRY, text=text)
    text = ""
    if isinstance(error, list) and all(isinstance(e, str) for e in error):
        text = _clip("; ".join(e.strip() for e in error if e.strip()))
    elif isinstance(error, str):
        text = _clip(error)
    return Problem(verdict=Verdict.UNCLASSIFIED, text=text or _clip(f"an error without a description, got {error!r}"))
