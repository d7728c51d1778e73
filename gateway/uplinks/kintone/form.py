"""The app's form as `GET /k/v1/app/form/fields.json` returns it, and the mapping checked against it; pure.

A wrong field code is the commonest mistake (kintone ignores unknown field codes when adding
records, so it would go unnoticed: records without the value), so every mapping is checked here
before anything is sent, and every problem is reported at once, each naming the field code.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.uplinks.kintone.config import Constant, Mode, RecordMapping

# Field types a record may set through records.json, and the JSON shape of their value.
TEXT_TYPES = frozenset({"SINGLE_LINE_TEXT", "MULTI_LINE_TEXT", "RICH_TEXT", "LINK"})
CHOICE_TYPES = frozenset({"DROP_DOWN", "RADIO_BUTTON"})
MULTI_CHOICE_TYPES = frozenset({"CHECK_BOX", "MULTI_SELECT"})
WRITABLE_TYPES = TEXT_TYPES | CHOICE_TYPES | MULTI_CHOICE_TYPES | {"NUMBER", "DATE", "TIME", "DATETIME"}
# updateKey may only name a text (1 line) or number field with 「値の重複を禁止する」 set.
KEY_TYPES = frozenset({"SINGLE_LINE_TEXT", "NUMBER"})


@dataclass(frozen=True, slots=True, kw_only=True)
class FormField:
    code: str
    type: str
    label: str = ""
    required: bool = False
    unique: bool = False
    options: frozenset[str] = frozenset()  # drop-down, radio, check box, multi-select choices
    has_default: bool = False


class FormError(ValueError):
    """The answer of fields.json is not what kintone documents."""


def parse_fields(doc: Any) -> dict[str, FormField]:
    """fields.json's `properties` → field code → FormField (subtable members are left out: not mappable)."""
    props = doc.get("properties") if isinstance(doc, dict) else None
    if not isinstance(props, dict):
        raise FormError(f"fields.json answer has no properties object, got {str(doc)[:200]!r}")
    out: dict[str, FormField] = {}
    for code, prop in props.items():
        if not isinstance(prop, dict) or not isinstance(prop.get("type"), str):
            raise FormError(f"fields.json property {code!r} has no type, got {str(prop)[:200]!r}")
        options = prop.get("options")
        default = prop.get("defaultValue")
        out[str(code)] = FormField(
            code=str(code),
            type=prop["type"],
            label=str(prop.get("label", "")),
            required=prop.get("required") in (True, "true"),
            unique=prop.get("unique") in (True, "true"),
            options=frozenset(options) if isinstance(options, dict) else frozenset(),
            has_default=default not in (None, "", []),
        )
    return out


def check_mappings(mappings: Sequence[RecordMapping], form: Mapping[str, FormField], *, where: str) -> list[str]:
    """Every problem between the mappings and the form, each naming the key path and the field code."""
    problems: list[str] = []
    for m, mapping in enumerate(mappings):
        at = f"{where}.mappings[{m}]"
        for code, source in mapping.fields.items():
            field = form.get(code)
            if field is None:
                problems.append(f"{at}.fields.{code}: the app has no field with this field code{_near(code, form)}")
                continue
            if field.type not in WRITABLE_TYPES:
                problems.append(
                    f"{at}.fields.{code}: a {field.type} field cannot be set through the REST API records, "
                    f"got field {code!r} ({field.label}); map a text, number, date/time or choice field"
                )
                continue
            if isinstance(source, Constant):
                problems.extend(_check_constant(f"{at}.fields.{code}", field, source))
        if mapping.mode is Mode.UPSERT:
            assert mapping.key_field is not None
            key = form.get(mapping.key_field)
            if key is None:
                problems.append(
                    f"{at}.key_field: the app has no field with this field code{_near(mapping.key_field, form)}"
                )
            elif key.type not in KEY_TYPES or not key.unique:
                problems.append(
                    f"{at}.key_field: updateKey needs a text (1 line) or number field with 値の重複を禁止する "
                    f"(prohibit duplicate values), got {key.type} field {key.code!r} "
                    f"{'with' if key.unique else 'without'} it; turn it on in the app's form settings"
                )
        # upsert may add records too, so a required field must be set by every mapping
        given = set(mapping.fields) | ({mapping.key_field} if mapping.key_field else set())
        problems.extend(
            f"{at}.fields: the app's field {field.code!r} ({field.label}) is required and has no default, "
            "got no mapping for it; map it or make it optional in the app"
            for field in form.values()
            if field.required and not field.has_default and field.code not in given and field.type in WRITABLE_TYPES
        )
    return problems


def _check_constant(at: str, field: FormField, const: Constant) -> list[str]:
    value = const.value
    if field.type in CHOICE_TYPES and (not isinstance(value, str) or value not in field.options):
        return [f"{at}: must be one of the field's choices ({', '.join(sorted(field.options))}), got {value!r}"]
    if field.type in MULTI_CHOICE_TYPES:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if v not in field.options]
        if bad:
            return [f"{at}: must be among the field's choices ({', '.join(sorted(field.options))}), got {bad!r}"]
    return []


def _near(code: str, form: Mapping[str, FormField]) -> str:
    """The app's field codes, or those that look like `code`, so the fix is at hand."""
    writable = sorted(c for c, f in form.items() if f.type in WRITABLE_TYPES)
    near = difflib.get_close_matches(code, writable, n=3, cutoff=0.6)
    shown = near or writable
    return f", got {code!r}; the app's field codes{' like it' if near else ''}: {', '.join(shown[:20])}"
