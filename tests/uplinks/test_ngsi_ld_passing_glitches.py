"""NGSI-LD: an entity left out of a 207 now and then is never dead-lettered for it. The unclassified count
is the entity's and "in a row": a delivery ends it, a newer reading after a rejection starts its own, and with
`catch_up = "latest-state"` (a new newest reading each try) it still ends the row in UNCLASSIFIED_LIMIT tries."""

from __future__ import annotations

from pathlib import Path

from gateway.adapter_api import AdapterContext
from gateway.buffer.store import settled
from gateway.records import with_seq
from gateway.uplinks.api import DELIVERED, Outcome, Status
from gateway.uplinks.ngsi_ld import NgsiLdConfig, NgsiLdUplink
from gateway.uplinks.ngsi_ld.uplink import UNCLASSIFIED_LIMIT
from tests.support.orion_double import OrionDouble
from tests.uplinks.test_ngsi_ld_207 import BATCH, G2, make_uplink, reading

MISSING = "no result for this entity in the 207 answer"


async def test_passing_glitches_between_deliveries_never_add_up_to_a_dead_letter(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        runs: list[tuple[list[Outcome], list[Outcome]]] = []
        for _ in range(2 * UNCLASSIFIED_LIMIT + 1):
            orion_double.leave_out_ld_entity(G2)  # a passing glitch: G2 missing from one 207 answer
            glitched = await up.deliver(BATCH)
            orion_double._ld_unreported.discard(G2)  # the broker is fine again (the double has no "stop")
            runs.append((glitched, await up.deliver(BATCH)))
    finally:
        await up.close()
    retried = Outcome(Status.RETRY, f"the NGSI-LD broker could not write entity {G2}, got {MISSING}")
    for glitched, clean in runs:
        assert glitched == [DELIVERED, retried, DELIVERED]
        assert clean == [DELIVERED] * 3
    # the clean deliveries were answered 201 or 204, not 207: only the glitches went through the 207 path
    assert {r.status for r in orion_double.requests[0::2]} == {207}
    assert {r.status for r in orion_double.requests[1::2]} <= {201, 204}
    assert up.counters.rejected == 0


async def test_a_reading_is_not_dead_lettered_for_the_glitches_of_an_older_one(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # two readings of G2 (the second in a request of its own: LD never sends an entity twice in one)
    older, other, newer = (
        with_seq(reading("g2", 1.0), 11),
        with_seq(reading("g1", 1.5), 12),
        with_seq(reading("g2", 2.0), 13),
    )
    orion_double.leave_out_ld_entity(G2)  # the broker never reports G2
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        runs = [await up.deliver([older, other, newer]) for _ in range(UNCLASSIFIED_LIMIT + 1)]
    finally:
        await up.close()
    assert [run[0].status for run in runs[: UNCLASSIFIED_LIMIT - 1]] == [Status.RETRY] * (UNCLASSIFIED_LIMIT - 1)
    last = runs[UNCLASSIFIED_LIMIT - 1]
    # the older reading got its own tenth answer: rejected; the newer one was sent once, so far
    assert last[0] == Outcome(
        Status.REJECTED,
        f"ld-main: the NGSI-LD broker refused entity {G2}, got {MISSING} "
        f"(the same answer {UNCLASSIFIED_LIMIT} times in a row, none saying to retry)",
    )
    assert last[1:] == [
        DELIVERED,
        Outcome(Status.RETRY, f"the NGSI-LD broker could not write entity {G2}, got {MISSING}"),
    ]
    # the next delivery sends the newer reading again (the older one is settled): its second answer, retried
    assert runs[UNCLASSIFIED_LIMIT][2].status is Status.RETRY


async def test_latest_state_rejects_an_entity_never_reported_even_as_new_readings_come(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    """A review found a count per reading never reaching the limit here: each try sent the entity's newest
    reading, new since the last try, and the lane stayed blocked for as long as the gauge sent."""
    doc = {"name": "ld-main", "type": "ngsi-ld", "url": orion_double.url, "catch_up": "latest-state"}
    up = NgsiLdUplink(NgsiLdConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    orion_double.leave_out_ld_entity(G2)  # the broker never reports G2
    lane = [with_seq(reading("g2", 1.0), 1), with_seq(reading("g1", 1.0), 2)]
    tries = 0
    await up.start()
    try:
        while tries < 3 * UNCLASSIFIED_LIMIT:
            tries += 1
            outcomes = await up.deliver(lane)  # a RETRY keeps the cursor: the whole lane again, and what came
            if any(o.status is Status.REJECTED for o in outcomes):
                break
            seq = 100 + 2 * tries
            lane += [with_seq(reading("g2", 1.0 + tries), seq), with_seq(reading("g1", 1.0 + tries), seq + 1)]
    finally:
        await up.close()
    assert tries == UNCLASSIFIED_LIMIT
    rejected = [r.entity_id for r, o in zip(lane, outcomes, strict=True) if o.status is Status.REJECTED]
    # the newest of G2, and the older ones promoted after it (latest-state) with it; g1's never
    assert set(rejected) == {G2} and len(rejected) > 1


async def test_latest_state_clears_the_lane_of_an_entity_never_reported(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    """The lane as the buffer moves it (settled): a review found the readings promoted after the newest was rejected
    each starting a row of their own, the rejection never settled, and the lane never moving, gauge or no gauge."""
    doc = {"name": "ld-main", "type": "ngsi-ld", "url": orion_double.url, "catch_up": "latest-state"}
    up = NgsiLdUplink(NgsiLdConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    orion_double.leave_out_ld_entity(G2)  # the broker never reports G2
    lane = [with_seq(reading("g2", 1.0), 1), with_seq(reading("g1", 1.0), 2)]
    dead: list[int | None] = []
    delivered: list[int | None] = []
    tries = 0
    await up.start()
    try:
        while lane and tries < 6 * UNCLASSIFIED_LIMIT:
            tries += 1
            outcomes = await up.deliver(lane)
            done = set(settled(lane, outcomes))
            dead += [lane[i].seq for i in sorted(done) if outcomes[i].status is Status.REJECTED]
            delivered += [lane[i].seq for i in sorted(done) if outcomes[i].status is not Status.REJECTED]
            lane = [r for i, r in enumerate(lane) if i not in done]
            if tries < 5:  # the gauge sends four more of each, then stops
                seq = 100 + 2 * tries
                lane += [with_seq(reading("g2", 1.0 + tries), seq), with_seq(reading("g1", 1.0 + tries), seq + 1)]
    finally:
        await up.close()
    assert lane == []
    assert sorted(s for s in dead if s is not None) == [1, 102, 104, 106, 108]  # every G2 reading, dead-lettered
    assert 109 in delivered  # g1's newest went through (older ones superseded by it)
    assert tries <= 2 * UNCLASSIFIED_LIMIT
