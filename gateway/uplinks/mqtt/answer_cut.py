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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = ["CUT_NOTE", "Result", "cut_info", "cut_results"]

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
