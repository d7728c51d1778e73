"""Orion's syntax rules for ids, types, names, tenants and service paths, as reusable validators.

Every `check_*` returns its argument unchanged or raises `ValueError("must be ...")` naming what is
valid, so each works both as a pydantic `AfterValidator` (the config layer appends `, got <value>`)
and at run time (`gateway.ngsi.check` wraps the message with the entity and attribute).

Identifiers (entity id/type, attribute and metadata names and types) follow Orion's "Identifiers
syntax restrictions" plus its "General syntax restrictions": 1-256 printable ASCII characters, no
blanks, none of `< > " ' = ; ( )` nor `& ? / #`. We also refuse `{ } | \\ ^ `` (legal in NGSI v2 but
not in a URI) so that every id this gateway accepts can also be sent to an NGSI-LD broker as
`urn:ngsi-ld:<Type>:<id>`. Attribute and metadata names must not start with `$`: Orion stores them
as MongoDB keys, and versions before 3.1 answer 500 for such a name.
"""

from __future__ import annotations

import re

# Orion's "General syntax restrictions": refused in ids, names *and* string values
BANNED_CHARS = "<>\"'=;()"
# Identifiers additionally refuse these (Orion) and the URI-unsafe ones (our NGSI-LD promise)
ID_EXTRA_BANNED = "&?/#"
URI_UNSAFE = "{}|\\^`"
_ID_BANNED = frozenset(BANNED_CHARS + ID_EXTRA_BANNED + URI_UNSAFE)
_ID_ALLOWED = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in _ID_BANNED)
_ID_RE = re.compile("[" + re.escape(_ID_ALLOWED) + "]{1,256}")
_SHOWN_BANNED = "< > \" ' = ; ( ) & ? / # { } | \\ ^ `"
_ID_RULE = f"1-256 printable ASCII characters without blanks or any of {_SHOWN_BANNED}"

# Orion: `id`/`type` collide with the entity keys, `geo:distance` with orderBy, `*` means "all",
# the rest are builtins (`dateExpires` would even make the entity transient)
RESERVED_ATTRIBUTE_NAMES = frozenset(
    {"id", "type", "geo:distance", "*", "dateCreated", "dateModified", "dateExpires", "alterationType", "servicePath"}
)
# Orion's builtin metadata, `*`, and `evalPriority` (expression ordering, meaningless for a device).
# `ignoreType` is special but legitimate: it marks an extra, informative geo:json location, so it
# is allowed here and `gateway.ngsi.check` insists on a Boolean value.
RESERVED_METADATA_NAMES = frozenset({"dateCreated", "dateModified", "previousValue", "actionType", "*", "evalPriority"})

_SERVICE_RE = re.compile(r"[a-z0-9_]{1,50}")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_]{1,50}")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _offending(text: str) -> str:
    """The first character that breaks the identifier rule, shown so a technician can find it."""
    if not text:
        return "it is empty"
    if len(text) > 256:
        return f"it has {len(text)} characters"
    for ch in text:
        if ch in _ID_BANNED or not ("!" <= ch <= "~"):
            return f"found {ch!r}"
    return "it is invalid"


def _check_identifier(text: str, what: str) -> str:
    if not isinstance(text, str) or not _ID_RE.fullmatch(text):
        detail = _offending(text) if isinstance(text, str) else f"it is a {type(text).__name__}"
        raise ValueError(f"{what} must be {_ID_RULE} ({detail})")
    return text


def check_entity_id(value: str) -> str:
    return _check_identifier(value, "entity id")


def check_entity_type(value: str) -> str:
    return _check_identifier(value, "entity type")


def check_attribute_type(value: str) -> str:
    return _check_identifier(value, "attribute type")


def _no_dollar(value: str, what: str) -> None:
    # names are keys of Orion's MongoDB documents: Orion before 3.1 fails with 500 on a leading $
    # (telefonicaid/fiware-orion#3841), and a key like $set reads as an operator
    if value.startswith("$"):
        raise ValueError(f"{what} must not start with '$' (Orion stores names as database keys)")


def check_attribute_name(value: str) -> str:
    _check_identifier(value, "attribute name")
    _no_dollar(value, "attribute name")
    if value in RESERVED_ATTRIBUTE_NAMES:
        reserved = ", ".join(sorted(RESERVED_ATTRIBUTE_NAMES))
        raise ValueError(f"attribute name must not be one Orion reserves ({reserved})")
    return value


def check_metadata_name(value: str) -> str:
    _check_identifier(value, "metadata name")
    _no_dollar(value, "metadata name")
    if value in RESERVED_METADATA_NAMES:
        reserved = ", ".join(sorted(RESERVED_METADATA_NAMES))
        raise ValueError(f"metadata name must not be one Orion reserves ({reserved})")
    return value


def check_service(value: str) -> str:
    """`Fiware-Service`: Orion lowercases it silently, which would split a tenant in two."""
    if not isinstance(value, str) or not _SERVICE_RE.fullmatch(value):
        raise ValueError("must be 1-50 characters of a-z 0-9 _ (lower case; Orion's Fiware-Service)")
    return value


def check_service_path(value: str) -> str:
    """`Fiware-ServicePath` for writes: exactly one absolute path, no `#`, no trailing `/`."""
    rule = "must be / or / followed by 1-10 segments of A-Z a-z 0-9 _ (1-50 each) separated by /, without a trailing /"
    if not isinstance(value, str):
        raise ValueError(rule)
    if value == "/":
        return value
    if not value.startswith("/") or value.endswith("/"):
        raise ValueError(rule)
    segments = value[1:].split("/")
    if len(segments) > 10 or not all(_SEGMENT_RE.fullmatch(s) for s in segments):
        raise ValueError(rule)
    return value


def check_id_template(template: str) -> str:
    """An id such as `urn:ngsi-ld:WaterObserved:{device}`: literal parts legal, `{name}` placeholders."""
    if not isinstance(template, str) or not template:
        raise ValueError(f"must be a non-empty id template of {_ID_RULE}, with {{name}} placeholders")
    literal = _PLACEHOLDER_RE.sub("", template)
    if "{" in literal or "}" in literal:
        raise ValueError("must use placeholders of the form {name} (a letter or _ then letters, digits, _)")
    if literal:
        for ch in literal:
            if ch in _ID_BANNED or not ("!" <= ch <= "~"):
                raise ValueError(f"must be {_ID_RULE} outside the {{name}} placeholders (found {ch!r})")
        if len(literal) > 256:
            raise ValueError(f"must be {_ID_RULE} outside the {{name}} placeholders (it has {len(literal)})")
    return template


def template_fields(template: str) -> list[str]:
    """The placeholder names of an id template, in order (`{device}` → `device`)."""
    return _PLACEHOLDER_RE.findall(template)
