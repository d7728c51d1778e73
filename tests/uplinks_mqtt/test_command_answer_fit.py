"""Fitting an answer to the Maximum Packet Size a broker announces: the PUBLISH as the listener sends it, whatever the texts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.uplinks.mqtt.answer_cut import CUT_NOTE, Result, cut_info, fit_results, left_out, without_texts
from gateway.uplinks.mqtt.answer_publisher import answer_packet_bytes
from gateway.uplinks.mqtt.commands import result_messages
from gateway.uplinks.mqtt.config import MqttFormat, TopicStyle

NAMES = st.text(st.characters(codec="utf-8", exclude_characters="@|#"), min_size=1, max_size=12)
# lengths drawn evenly: texts longer than the left-out note are the ones worth cutting; control characters
# too, which JSON spells in 6 bytes each, so a short text of them is larger than any cut of it
TEXTS = st.integers(0, 400).flatmap(lambda n: st.text(st.characters(codec="utf-8"), min_size=n, max_size=n)) | (
    st.integers(0, 30).flatmap(lambda n: st.text(st.sampled_from("\x01\x1f"), min_size=n, max_size=n))
)
RESULT = st.tuples(NAMES, st.booleans(), TEXTS)


def packet(fmt: MqttFormat, v5: bool, results: list[Result]) -> int:
    [(topic, payload)] = result_messages("dev1", results, apikey="K3Y", fmt=fmt, style=TopicStyle.PLAIN)
    return answer_packet_bytes(topic, payload, v5=v5)


@settings(max_examples=300)
@given(
    data=st.data(),
    fmt=st.sampled_from([MqttFormat.IOTA_JSON, MqttFormat.IOTA_UL]),
    v5=st.booleans(),
)
def test_an_answer_fitted_to_the_announced_maximum_keeps_the_longest_text_and_drops_it_only_if_no_cut_fits(
    data: st.DataObject, fmt: MqttFormat, v5: bool
) -> None:
    if fmt is MqttFormat.IOTA_JSON:
        results = data.draw(st.lists(RESULT, min_size=1, max_size=4, unique_by=lambda r: r[0]))
    else:  # the UL agent reads one result per message
        results = [data.draw(RESULT)]
    whole = packet(fmt, v5, results)
    limit = data.draw(st.integers(0, whole - 1), label="limit")  # only an answer over the limit is fitted

    def size(candidate: list[Result]) -> int:
        return packet(fmt, v5, candidate)

    out = fit_results(results, size, limit)
    assert [(n, ok) for n, ok, _ in out] == [(n, ok) for n, ok, _ in results]
    smallest_cut = [(n, ok, cut_info(info, 0)) for n, ok, info in results]
    without = left_out(results)
    if size(smallest_cut) > limit and size(without) > limit:
        # the last resort: each command's name and OK/ERROR alone, the smallest answer there is
        assert out == [(n, ok, "") for n, ok, _ in results]
        assert size(out) <= min(size(smallest_cut), size(without))
        return
    assert size(out) <= limit
    if out == without:
        assert size(smallest_cut) > limit  # left out only when no cut fits
        return
    kept = {
        note.start()
        for (_, _, info), (_, _, text) in zip(results, out, strict=True)
        if text != info and (note := CUT_NOTE.search(text)) is not None
    }
    assert len(kept) <= 1  # one length for every text that is cut
    keep = kept.pop() if kept else 0
    if keep + 1 < max(len(info) for _, _, info in results):  # one more character each would be over
        assert size([(n, ok, cut_info(info, keep + 1)) for n, ok, info in results]) > limit


def test_a_text_no_cut_makes_smaller_is_left_out_when_that_fits() -> None:
    results: list[Result] = [("report", True, "\x01" * 19)]

    def size(candidate: list[Result]) -> int:
        return packet(MqttFormat.IOTA_JSON, True, candidate)

    limit = size(left_out(results))
    assert fit_results(results, size, limit) == [
        ("report", True, "result text of 19 characters left out: over the maximum packet size of the broker")
    ]
    # neither fits: the answer without any text, which fits here
    assert fit_results(results, size, limit - 1) == without_texts(results) == [("report", True, "")]
    # nothing fits: still the answer without any text, the smallest there is (the client refuses to send it)
    assert fit_results(results, size, size(without_texts(results)) - 1) == [("report", True, "")]
