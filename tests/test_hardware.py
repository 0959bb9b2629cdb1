from __future__ import annotations

import pytest

from chronorec import hardware


@pytest.mark.parametrize(
    ("flags", "amx", "bf16"),
    [
        ({"avx2", "fma"}, False, False),
        ({"avx512f", "avx512_bf16"}, False, True),
        ({"avx512_bf16", "amx_bf16", "amx_tile"}, True, True),
        (set(), False, False),
    ],
)
def test_bf16_support_is_read_from_the_cpu_flags(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], amx: bool, bf16: bool
) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    assert hardware.cpu_has_amx() is amx
    assert hardware.cpu_has_bf16() is bf16


def test_cpu_flags_of_this_machine_parse_into_words() -> None:
    flags = hardware.cpu_flags()
    assert all(flag and " " not in flag and ":" not in flag for flag in flags)
