"""A command answer cut short after the broker refused it as too large, still valid for the IoT Agent.

What an agent takes from an answer (iotagent-json lib/commandHandler.js `updateCommand`, iotagent-ul
lib/ulParser.js `result`): the command's name (a key of the JSON object, or what follows `@` in
UltraLight) and a text it copies into `<command>_info` while it sets `<command>_status` to OK whatever
the text says. The text's `OK: ` / `ERROR: ` head is the only way the platform learns whether the
command worked. So a cut answer keeps every name and every head and cuts each text from its end, with a
note saying how much went; the agent parses it like any other answer.

The cut is made in the raw text, before the percent-encoding of `result_text`, so no escape is split and
what the agent stores still decodes to the start of the original text and the note. Pure: the caller
says what fits, this module finds the longest texts that do.

Against a limit the broker announces (the Maximum Packet Size of its CONNACK) the caller knows exactly what
fits, so `fit_results` also offers the answer with its texts left out, for the rare text no cut makes smaller
(JSON spells a control character in 6 bytes, and a text of fewer characters than a note stays whole).

The last resort is `without_texts`: every command's name and `OK: ` / `ERROR: ` and nothing else, the smallest
answer there is. The platform learns how each command ended, which is what the agent waits for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = ["CUT_NOTE", "Result", "cut_info", "cut_results", "fit_results", "left_out", "without_texts"]

Result = tuple[str, bool, str]  # command name, ok, info
# Short on purpose: in a small answer a long note would take the room of the text it stands for. The
# gateway's log says why (the broker refused the answer as too large).
CUT_NOTE = re.compile(r" \[(\d+) characters cut\]\Z")


def cut_info(info: str, keep: int) -> str:
    """`info` cut to its first `keep` characters and a note of what went, or whole if that is no shorter."""
    if keep >= len(info):
        return info
    cut = f"{info[:keep]} [{len(info) - keep} characters cut]"
    return cut if len(cut) < len(info) else info


def cut_results(results: Sequence[Result], fits: Callable[[list[Result]], bool]) -> list[Result]:
    """`results` with every text cut to at most one length, the longest that `fits` takes; every text at its
    shortest if none does. The whole answer is taken not to fit (the broker refused it)."""

    def at(keep: int) -> list[Result]:
        return [(name, ok, cut_info(info, keep)) for name, ok, info in results]

    # at(0) even if it does not fit: the broker's real limit is unknown, the smallest answer stands the best chance
    fitting, refused = 0, max((len(info) for _, _, info in results), default=0)
    while refused - fitting > 1:
        middle = (fitting + refused) // 2
        if fits(at(middle)):
            fitting = middle
        else:
            refused = middle
    return at(fitting)


def left_out(results: Sequence[Result]) -> list[Result]:
    """`results` with every text replaced by a note of its length: what an answer without its texts says."""
    return [
        (name, ok, f"result text of {len(info)} characters left out: over the maximum packet size of the broker")
        for name, ok, info in results
    ]


def without_texts(results: Sequence[Result]) -> list[Result]:
    """`results` with no text at all: each command's name and `OK: ` / `ERROR: ` alone, the smallest answer."""
    return [(name, ok, "") for name, ok, _ in results]


def fit_results(results: Sequence[Result], size: Callable[[list[Result]], int], limit: int) -> list[Result]:
    """For a broker's announced `limit` on `size`: `results` cut to the longest texts that fit, else with their
    texts left out if that fits, else without any text (which may not fit either: then nothing does)."""
    cut = cut_results(results, lambda candidate: size(candidate) <= limit)
    if size(cut) <= limit:
        return cut
    noted = left_out(results)
    return noted if size(noted) <= limit else without_texts(results)
