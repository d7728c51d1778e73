"""An upper bound of the Orion request a FIWARE IoT Agent makes of an MQTT message (sans I/O).

Theory of operation. iotagent-node-lib 4.14 (`lib/services/ngsi/entities-NGSI-v2.js`,
`sendUpdateValueNgsi2`) turns one MQTT message into one Orion request and does not retry when Orion
refuses it: a single measure becomes `POST /v2/entities?options=upsert` with one entity, a
multi-measure `POST /v2/op/update` `{"actionType":"append","entities":[...]}` with one entity per
measure. With `timestamp: true` on the config group each entity is the measure with
- `"id":<entity name>,"type":<entity type>,` in front;
- every attribute wrapped: `"k":v` becomes
  `"k":{"type":<T>,"value":v,"metadata":{<provisioned metadata>,"TimeInstant":{"type":"DateTime","value":<t>}}}`;
- the measure's `"TimeInstant":"<t>"` turned into `"TimeInstant":{"type":"DateTime","value":"<t>"}`;
- the group's or device's static attributes added, each wrapped the same way;
- values printed again by JavaScript's `JSON.stringify`: the same text for strings, booleans and
  objects, but a number this gateway prints as `1e+16` becomes `10000000000000000` (up to 16 more
  bytes, for exponents e+16..e+20) and one printed `1e-6` / `1e-05` becomes `0.000001` / `0.00001`
  (up to 4 more); an UltraLight string gains its quotes and escapes.

So for n measures of k_i attributes the request is at most

    REQUEST + Σ (measure_i + ENTITY + id + type + entity allowance
                 + k_i × (ATTRIBUTE + attribute allowance) + 16 × big exponents_i)

with the allowances covering what the provisioning adds (static attributes, metadata such as
`unitCode`, an entity name longer than the reading's entity id). Attribute types are counted at their
longest plausible name (`TextUnrestricted`), so the bound holds whatever the group provisions.
tests/iota_agent checks the bound, and how close it is, against the real agents.

On the hot path the planner first takes `coarse_bound` of a message from its byte total alone (every
attribute at least `"k":0,`): the usual message, a few dozen measures, is far below Orion's limit by
that, and only a message near the limit (a backlog of few devices) pays for the per-measure bound.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TIMESTAMP_BYTES", "AgentSizing", "coarse_bound", "json_measure_bound", "sizing", "ul_group_bound"]

TIMESTAMP_BYTES = len("2024-06-01T03:00:00.000Z")  # the gateway's TimeInstant, always this long
TYPE_BYTES = len("TextUnrestricted")  # the longest attribute type the agents are provisioned with here
EXPONENT_GROWTH = 16  # '1e+20' (5 bytes) printed by JavaScript as 21 digits
SMALL_EXPONENT_GROWTH = 4  # '1e-6' printed by JavaScript as 0.000001: counted in ATTRIBUTE, no scan for it

REQUEST = len(b'{"actionType":"append","entities":[]}')
# per entity: `"id":<id>,"type":<type>,` in front (the quotes of id and type are counted with them),
# the TimeInstant attribute wrapped, and the comma between entities
ENTITY = len(b'"id":,"type":,') + len(b'{"type":"DateTime","value":}') + len(b",")
# per attribute: its value wrapped in type, value and the TimeInstant metadata (and the room a small
# exponent takes in JavaScript's form, so no scan for `e-` is needed)
ATTRIBUTE = (
    len(b'{"type":"')
    + TYPE_BYTES
    + len(b'","value":')
    + len(b',"metadata":{"TimeInstant":{"type":"DateTime","value":"')
    + TIMESTAMP_BYTES
    + len(b'"}}}')
    + SMALL_EXPONENT_GROWTH
)
# UltraLight `ts|k|v` is, as the agent's measure object, `{"k":v,"TimeInstant":"ts"}`: the group
# gains the object and TimeInstant's key, each pair its key's quotes, colon and comma against two bars
# (2 bytes), plus quotes if the value is a string (2 more)
UL_GROUP = len(b'{"TimeInstant":""}')
UL_PAIR = len(b'"":,') - len(b"||") + len(b'""')
# JSON escapes `"` and `\` as two characters and control characters as up to six
_ESCAPED = bytes(range(0x20)) + b'"\\'
_NOT_ESCAPED = bytes(b for b in range(256) if b not in _ESCAPED)
ESCAPE_GROWTH = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSizing:
    """The constants of the bound for one uplink: what to add per request, per entity and per attribute."""

    limit: int  # Orion's request size limit (its -inReqPayloadMaxSize)
    request: int
    attribute: int  # ATTRIBUTE + the uplink's attribute allowance
    entity_allowance: int

    def entity(self, entity_id: str, entity_type: str) -> int:
        """The per-entity addition for an entity of this id and type (ids and types are ASCII, no escapes)."""
        return ENTITY + len(entity_id) + 2 + len(entity_type) + 2 + self.entity_allowance


def sizing(*, limit: int, attribute_allowance: int, entity_allowance: int) -> AgentSizing:
    return AgentSizing(
        limit=limit, request=REQUEST, attribute=ATTRIBUTE + attribute_allowance, entity_allowance=entity_allowance
    )


def json_measure_bound(body: bytes, attributes: int, entity: int, sizing: AgentSizing) -> int:
    """The bytes one serialized iotagent-json measure of `attributes` attributes adds to the agent's request."""
    bound = len(body) + entity + attributes * sizing.attribute
    if b"+" in body:
        # every number printed with a big exponent holds `e+`; texts holding it only loosen the bound
        bound += EXPONENT_GROWTH * body.count(b"e+")
    return bound


def ul_group_bound(body: bytes, attributes: int, entity: int, sizing: AgentSizing) -> int:
    """The bytes one UltraLight group (`ts|k|v|...` in UTF-8) of `attributes` pairs adds to the agent's request."""
    bound = len(body) + UL_GROUP + entity + attributes * (sizing.attribute + UL_PAIR)
    escaped = len(body.translate(None, _NOT_ESCAPED))  # what is left once all else is deleted
    if escaped:
        bound += ESCAPE_GROWTH * escaped
    if b"+" in body:
        bound += EXPONENT_GROWTH * body.count(b"e+")
    return bound


# The fewest bytes an attribute takes in a measure: `"k":0,` in JSON, `|k|0` in UltraLight. A measure of
# b bytes has at most b // MIN_PAIR attributes, which bounds the request without counting them.
MIN_JSON_PAIR = len(b'"k":0,')
MIN_UL_PAIR = len(b"|k|0")


def coarse_bound(measure_bytes: int, measures: int, entities: int, sizing: AgentSizing, *, ul: bool) -> int:
    """A looser bound of the request for `measures` measures of `measure_bytes` bytes in all (their per-entity
    additions summing to `entities`), from the totals alone: when it fits the limit, the precise per-measure
    bound is not needed, which spares the planner a pass over every measure of the usual batch."""
    if ul:
        pairs = measure_bytes // MIN_UL_PAIR
        return (
            sizing.request
            + measure_bytes * (1 + ESCAPE_GROWTH)
            + entities
            + measures * UL_GROUP
            + pairs * (sizing.attribute + UL_PAIR + EXPONENT_GROWTH)
        )
    pairs = measure_bytes // MIN_JSON_PAIR
    return sizing.request + measure_bytes + entities + pairs * (sizing.attribute + EXPONENT_GROWTH)
