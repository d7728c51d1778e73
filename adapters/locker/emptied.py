"""When a compartment read empty behind its locked door counts as emptied: the infrared reading debounced.

Theory of operation. On a CU16 a door can open and close between two statuses (the poll interval, a status
lost), and only the infrared sensor tells: the compartment read occupied behind the locked door, then empty
behind it. A sensor flickers too (a thin book lying flat reflects at the edge of its range), and a flicker looks
the same for one status. So the empty reading counts only once it held for `EMPTIED_STATUSES` statuses in a row
after one that read it occupied, the door read locked in all of them: at the default poll interval (0.5 s) the
reading stayed empty over 1 s or more, longer than a flicker, and nothing a patron waits for (the patron has
gone by then; the pickup or the alert just comes that much later). Two would be a single poll interval, which a
flicker often outlasts; more would hold the pickup back for long on a line polled slowly (60 s at most). A status lost in between is no reading and breaks nothing.

The alert for it (`emptiedUnseen`) is raised once, and again only after the door was seen open (or the board's
statuses were lost, so its door may have opened): a book cannot come back into a compartment without its door
opening, so a compartment read occupied again behind the door that stayed shut is the sensor, and a sensor that
flickers for long would otherwise raise one alert per flicker. Staff answering the alert open the door and so
re-arm it.

    door read open ──► no run, alert re-armed          status with no sensor reading ──► no run
    locked, occupied ──► a run may start (run 0)
    locked, empty after that ──► run 1 … EMPTIED_STATUSES: emptied (once per run); occupied again ──► run 0

Sans-I/O: readings and `now` in, a bool out.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EMPTIED_STATUSES", "EmptiedWatch"]

EMPTIED_STATUSES = 3


@dataclass(slots=True)
class EmptiedWatch:
    """One compartment's infrared readings behind its locked door."""

    occupied_before: bool = False  # a status read it occupied behind the locked door, none open since
    run: int = 0  # statuses in a row since then that read it empty behind the locked door
    since: float = 0.0  # the run's first status (monotonic): when the door had opened and closed by
    alerted: bool = False  # `emptiedUnseen` raised, the door not seen open since

    def status(self, *, locked: bool, occupied: bool | None, now: float) -> bool:
        """One status's reading; True on the status that makes the compartment emptied (once per run)."""
        if not locked:
            self.forget()
            return False
        if occupied is None:  # a board without infrared sensors
            self.occupied_before, self.run = False, 0
            return False
        if occupied:
            self.occupied_before, self.run = True, 0
            return False
        if self.run == 0:
            if not self.occupied_before:
                return False  # empty all along, or since the door was seen open: nothing unseen
            self.since = now
        if self.run >= EMPTIED_STATUSES:
            return False  # counted already
        self.run += 1
        return self.run == EMPTIED_STATUSES

    @property
    def settling(self) -> bool:
        """An empty reading is under way and has not held long enough yet."""
        return 0 < self.run < EMPTIED_STATUSES

    def forget(self) -> None:
        """The door seen open, or its state not known (offline, start): what comes next starts afresh."""
        self.occupied_before, self.run, self.alerted = False, 0, False

    def alert_due(self) -> bool:
        """Whether the emptying just counted is to be alerted: the first since the door was last seen open."""
        due, self.alerted = not self.alerted, True
        return due
