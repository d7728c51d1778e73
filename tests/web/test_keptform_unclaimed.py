"""KeptForms.claim says why it has nothing to offer (gateway.web.keptform.Unclaimed), to the form's own browser
only, for a bounded number of forms gone."""

from __future__ import annotations

from gateway.web.keptform import KeptForm, KeptForms, Unclaimed, keep
from tests.web.test_keptform import BROWSER, NOW, OTHER_BROWSER, TOKEN, URLENCODED


def _form() -> KeptForm:
    kept = keep("/users/role", URLENCODED, [("name", "mika"), ("role", "admin")], token=TOKEN)
    assert kept is not None
    return kept


def test_why_a_form_went_is_told_to_its_own_browser_only() -> None:
    store = KeptForms(per_browser=1)
    first = store.put(_form(), browser=BROWSER, now=NOW)
    second = store.put(_form(), browser=BROWSER, now=NOW + 1)
    assert store.claim(first, browser=OTHER_BROWSER, now=NOW + 2) is Unclaimed.GONE
    assert store.claim(first, browser=BROWSER, now=NOW + 2) is Unclaimed.PUSHED_OUT
    assert store.claim(second, browser=BROWSER, now=NOW + 2) == second


def test_a_form_claimed_once_is_gone_for_a_second_login() -> None:
    store = KeptForms()
    carried = store.put(_form(), browser=BROWSER, now=NOW)
    assert store.claim(carried, browser=BROWSER, now=NOW) == carried
    assert store.claim(carried, browser=BROWSER, now=NOW) is Unclaimed.GONE


def test_a_restarted_web_knows_no_form_of_before() -> None:
    carried = KeptForms().put(_form(), browser=BROWSER, now=NOW)
    assert KeptForms().claim(carried, browser=BROWSER, now=NOW) is Unclaimed.GONE


def test_the_reasons_remembered_are_bounded_the_oldest_go_first() -> None:
    store = KeptForms(per_browser=1, remembered=2)
    carried = [store.put(_form(), browser=BROWSER, now=NOW + i) for i in range(4)]  # each pushes the last out
    claimed = [store.claim(c, browser=BROWSER, now=NOW + 5) for c in carried]
    assert claimed == [Unclaimed.GONE, Unclaimed.PUSHED_OUT, Unclaimed.PUSHED_OUT, carried[3]]


def test_a_form_expired_is_told_so_however_long_after() -> None:
    store = KeptForms(keep_s=600)
    carried = store.put(_form(), browser=BROWSER, now=NOW)
    store.put(_form(), browser=OTHER_BROWSER, now=NOW + 601)  # forgets the old ones as it keeps a new one
    assert store.claim(carried, browser=BROWSER, now=NOW + 3 * 3600) is Unclaimed.EXPIRED
