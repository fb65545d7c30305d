import itertools

import pytest

from pgf_sim.core import NM, ConfigError


def test_parse_and_str_round_trip():
    assert NM.parse("2:4") == NM(2, 4)
    assert NM.parse(" 1:32 ") == NM(1, 32)
    assert NM.parse("dense") == NM(1, 1)
    assert str(NM(1, 8)) == "1:8"
    assert NM.parse((2, 4)) == NM(2, 4)


@pytest.mark.parametrize("bad", ["4:2", "0:4", "2-4", "a:b", "", "2:4:8"])
def test_parse_rejects(bad):
    with pytest.raises(ConfigError):
        NM.parse(bad)


def test_density_and_metadata():
    p = NM(2, 4)
    assert p.density == 0.5 and p.sparsity == 0.5
    assert NM(1, 8).index_bits == 3 and NM(1, 32).index_bits == 5 and NM(2, 4).index_bits == 2
    # PyTorch semi-structured storage (shared/HARDWARE.md): fp16 9/16, int8 10/16 of dense.
    assert NM(2, 4).storage_fraction(16) == pytest.approx(9 / 16)
    assert NM(2, 4).storage_fraction(8) == pytest.approx(10 / 16)
    assert NM(4, 4).storage_fraction(16) == 1.0


def test_compliance_hand_cases():
    assert NM(1, 8).complies_with(NM(2, 4))    # <= 1 non-zero in any aligned 4-window
    assert NM(2, 8).complies_with(NM(2, 4))    # both may land in one 4-window: 2 <= 2
    assert not NM(4, 8).complies_with(NM(2, 4))
    assert NM(1, 4).complies_with(NM(2, 4))
    assert not NM(3, 4).complies_with(NM(2, 4))
    assert NM(1, 8).complies_with(NM(2, 16))   # a 16-window spans two 8-groups
    assert not NM(1, 8).complies_with(NM(1, 16))
    assert NM(2, 4).complies_with(NM(4, 4))    # dense hardware runs anything


@pytest.mark.parametrize("m", [1, 2, 4, 8])
@pytest.mark.parametrize("hm", [1, 2, 4, 8])
def test_compliance_matches_exhaustive_layouts(m, hm):
    # Enumerate every layout of one period and check every aligned hardware window.
    period = max(m, hm)
    for n in range(1, m + 1):
        group_choices = list(itertools.combinations(range(m), n))
        worst = 0
        for layout in itertools.product(group_choices, repeat=period // m):
            bits = [0] * period
            for g, kept in enumerate(layout):
                for i in kept:
                    bits[g * m + i] = 1
            worst = max(worst, max(sum(bits[s:s + hm]) for s in range(0, period, hm)))
        for hn in range(1, hm + 1):
            assert NM(n, m).complies_with(NM(hn, hm)) == (worst <= hn), (n, m, hn, hm)
