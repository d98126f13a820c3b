"""The signature the business's receivers check: right body and secret, fresh, or refused."""

from bridge.signing import sign, verify

SECRET = "whsec-test-0123456789"


def test_a_signature_verifies_for_its_body_and_secret_only() -> None:
    header = sign(SECRET, b'{"a":1}', 1_700_000_000.7)
    assert header.startswith("t=1700000000,v1=") and len(header) == len("t=1700000000,v1=") + 64
    assert verify(SECRET, b'{"a":1}', header, 1_700_000_010)
    assert not verify(SECRET, b'{"a":2}', header, 1_700_000_010)
    assert not verify("another-secret", b'{"a":1}', header, 1_700_000_010)


def test_an_old_or_malformed_signature_is_refused() -> None:
    header = sign(SECRET, b"x", 1_700_000_000)
    assert verify(SECRET, b"x", header, 1_700_000_300)
    assert not verify(SECRET, b"x", header, 1_700_000_301)
    assert not verify(SECRET, b"x", "v1=abc", 1_700_000_000)
    assert not verify(SECRET, b"x", None, 1_700_000_000)
