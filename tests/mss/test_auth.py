"""The authenticator's challenge values are exactly what ``fastsip.digest.challenge_values`` gives."""

from __future__ import annotations

import pytest

from fastsip.digest import ALGORITHMS, NonceFactory, challenge_values
from mss.features.users import UserDirectory
from mss.sip.auth import Authenticator
from mss.storage.memory import MemoryStorage


@pytest.mark.parametrize("realm", ["example.test", 'odd "realm" \\ with nonce=""'])
@pytest.mark.parametrize("algorithms", [ALGORITHMS, ("MD5",)])
def test_challenge_template_matches_challenge_values(
    realm: str, algorithms: tuple[str, ...]
) -> None:
    auth = Authenticator(
        UserDirectory(MemoryStorage(), realm=realm),
        realm=realm,
        secret=b"s" * 32,
        algorithms=algorithms,
    )
    factory = NonceFactory(secret=b"t" * 32, lifetime=300)
    nonces = [factory.make(1e9 + i) for i in range(3)] + ["", "a b", 'with "quote"', "back\\slash"]
    for stale in (False, True, False):
        for nonce in nonces:
            expected = challenge_values(realm, nonce, stale=stale, algorithms=algorithms)
            assert auth._challenge_values(nonce, stale) == expected
