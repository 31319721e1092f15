"""The ng protocol's encoding, and what the client makes of answers that are not bencode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkiss.media.rtpengine import bdecode, bencode


def test_an_offer_round_trips() -> None:
    request = {"command": "offer", "call-id": "k1", "sdp": b"v=0\r\n", "replace": ["origin"]}
    encoded = bencode(request)
    assert encoded.startswith(b"d7:call-id2:k17:command5:offer")  # keys sorted
    assert bdecode(encoded) == {"call-id": b"k1", "command": b"offer", "replace": [b"origin"],
                                "sdp": b"v=0\r\n"}  # fmt: skip
    assert bdecode(b"i42e") == 42


@pytest.mark.parametrize(
    "data",
    [b"", b"x", b"i42", b"5:abc", b"d3:keye", b"di1e1:ve", b"l" * 5000, b"d3:key1:vex",
     b"dli1ee1:ve", b"4:\xff\xfe\xfd\xfc"[:3]],
)  # fmt: skip
def test_what_is_not_bencode_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        bdecode(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_value_error(data: bytes) -> None:
    try:
        bdecode(data)
    except ValueError:
        pass
