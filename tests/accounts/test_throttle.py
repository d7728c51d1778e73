"""AddressThrottle: attempts per client address in a sliding minute, with an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.accounts import throttle
from gateway.accounts.throttle import AddressThrottle


def test_per_address_limit_and_release() -> None:
    t = AddressThrottle(per_minute=3)
    assert [t.allow("192.0.2.1", 100.0 + i) for i in range(4)] == [True, True, True, False]
    assert t.allow("192.0.2.2", 103.0)  # another address is not held back
    assert t.retry_after("192.0.2.1", 103.0) == pytest.approx(57.0)
    assert not t.allow("192.0.2.1", 159.9)
    assert t.allow("192.0.2.1", 160.0)  # the first attempt left the window
    assert t.retry_after("192.0.2.2", 160.0) == 0.0


def test_refused_attempts_do_not_extend_the_wait() -> None:
    t = AddressThrottle(per_minute=1)
    assert t.allow("a", 0.0)
    for i in range(1, 60):
        assert not t.allow("a", float(i))
    assert t.allow("a", 60.0)


def test_invalid_rate() -> None:
    with pytest.raises(ValueError, match=r"^AddressThrottle.per_minute: must be at least 1, got 0$"):
        AddressThrottle(0)


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle, "MAX_ADDRESSES", 100)
    t = AddressThrottle(per_minute=5)
    for i in range(1000):
        assert t.allow(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(t._attempts) <= 100


@given(st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), max_size=60), st.integers(1, 5))
def test_never_more_than_per_minute_in_any_window(times: list[float], per_minute: int) -> None:
    t = AddressThrottle(per_minute)
    allowed = [now for now in sorted(times) if t.allow("a", now)]
    for start in allowed:
        assert sum(1 for x in allowed if start <= x < start + 60) <= per_minute
