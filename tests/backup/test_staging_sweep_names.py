"""A create's staging directory name says whose it is: no gateway id's sweep takes another id's for its own."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from gateway.backup.create_staging import made_by, staging_name

# gateway.id's shape (configbase.Identifier): 1-64 of a-z 0-9 _ -, starting with a letter or digit
_IDS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)
_TOKENS = st.text(alphabet="0123456789abcdef", min_size=8, max_size=8)


@given(_IDS, _IDS, _TOKENS)
def test_a_staging_name_is_its_own_gateway_ids_only(made: str, sweeping: str, token: str) -> None:
    assert made_by(staging_name(made, token), sweeping) == (made == sweeping)


@given(_IDS, _IDS, _TOKENS)
def test_a_longer_id_sharing_the_start_is_another(gateway_id: str, tail: str, token: str) -> None:
    """`fixture-gw` and `fixture-gw-02` on one share: the shorter id's sweep leaves the longer one's alone."""
    assert not made_by(staging_name(f"{gateway_id}-{tail}", token), gateway_id)


@given(_IDS, st.text(alphabet=string.ascii_lowercase + string.digits + "_", min_size=8, max_size=8))
def test_an_older_releases_random_name_is_no_ids(gateway_id: str, random: str) -> None:
    """`.staging-<mkdtemp's 8 characters>`: that sweep reads the config in it instead."""
    assert not made_by(f".staging-{random}", gateway_id)
