"""Cutting an answer the broker refused as too large: what the agent makes of it, whatever the texts and the size."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ngsi.identifiers import BANNED_CHARS
from gateway.ngsi.values import decode_percent
from gateway.uplinks.mqtt.answer_cut import CUT_NOTE, Result, cut_info, cut_results
from gateway.uplinks.mqtt.commands import result_messages
from gateway.uplinks.mqtt.config import MqttFormat, TopicStyle

NAMES = st.text(st.characters(codec="utf-8", exclude_characters="@|#"), min_size=1, max_size=12)
RESULT = st.tuples(NAMES, st.booleans(), st.text(max_size=400))


def payload(fmt: MqttFormat, results: list[Result]) -> bytes:
    [(_, data)] = result_messages("dev1", results, apikey="K3Y", fmt=fmt, style=TopicStyle.PLAIN)
    return data


def as_the_agent_stores(fmt: MqttFormat, data: bytes) -> list[tuple[str, str]]:
    """(command, `<command>_info`) pairs the agent takes from a cmdexe payload, texts decoded."""
    if fmt is MqttFormat.IOTA_JSON:
        pairs = list(orjson.loads(data).items())
    else:  # the UL agent: `<device>@<command>|<text up to the next '|'>`
        head, _, rest = data.decode().partition("|")
        pairs = [(head.partition("@")[2], rest.split("|")[0])]
    for _, text in pairs:
        assert not set(text) & set(BANNED_CHARS)  # Orion refuses these in a commandResult
    return [(name, decode_percent(text.replace("%7C", "|").replace("%23", "#"))) for name, text in pairs]


def kept(original: str, text: str) -> int | None:
    """How many characters of `original` a cut `text` kept; None if `text` is `original` whole."""
    if text == original:
        return None
    note = CUT_NOTE.search(text)
    assert note is not None, text
    keep = note.start()
    assert text[:keep] == original[:keep] and keep + int(note.group(1)) == len(original)
    assert len(text) < len(original)  # a cut that would be longer is not made
    return keep


@settings(max_examples=300)
@given(
    data=st.data(),
    fmt=st.sampled_from([MqttFormat.IOTA_JSON, MqttFormat.IOTA_UL]),
)
def test_a_cut_answer_keeps_every_command_and_outcome_and_the_most_text_that_fits(
    data: st.DataObject, fmt: MqttFormat
) -> None:
    if fmt is MqttFormat.IOTA_JSON:
        results = data.draw(st.lists(RESULT, min_size=1, max_size=4, unique_by=lambda r: r[0]))
    else:  # the UL agent reads one result per message
        results = [data.draw(RESULT)]
    budget = data.draw(st.integers(0, len(payload(fmt, results)) - 1), label="budget")  # only a refused answer is cut

    def fits(candidate: list[Result]) -> bool:
        return len(payload(fmt, candidate)) <= budget

    out = cut_results(results, fits)
    assert [(n, ok) for n, ok, _ in out] == [(n, ok) for n, ok, _ in results]
    stored = as_the_agent_stores(fmt, payload(fmt, out))
    assert stored == [(n, ("OK: " if ok else "ERROR: ") + text) for n, ok, text in out]
    keeps = {k for (_, _, info), (_, _, text) in zip(results, out, strict=True) if (k := kept(info, text)) is not None}
    assert len(keeps) <= 1  # one length for every text that is cut
    smallest = [(n, ok, cut_info(info, 0)) for n, ok, info in results]
    if not fits(smallest):
        assert out == smallest  # nothing fits: the smallest answer there is
        return
    assert fits(out)
    keep = keeps.pop() if keeps else 0
    longest = max(len(info) for _, _, info in results)
    if keep + 1 < longest:  # one more character for every text would not fit (else the search stopped short)
        assert not fits([(n, ok, cut_info(info, keep + 1)) for n, ok, info in results])


def test_a_text_shorter_than_its_note_stays_whole() -> None:
    assert cut_info("done", 0) == "done"
    assert cut_info("x" * 100, 10) == "x" * 10 + " [90 characters cut]"
    assert cut_info("x" * 100, 100) == "x" * 100
