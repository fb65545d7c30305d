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


def _worst_window_by_enumeration(n: int, m: int, window: int) -> int:
    """Every aligned window of one lcm(m, window) period, each group filled as much as the
    window overlaps it (at most n): the definition, in O(lcm) steps."""
    import math

    worst = 0
    for start in range(0, math.lcm(m, window), window):
        total = 0
        for g in range(start // m * m, start + window, m):
            total += min(n, min(start + window, g + m) - max(start, g))
        worst = max(worst, total)
    return worst


@pytest.mark.parametrize("m", [1, 3, 5, 6, 7, 12, 24])
@pytest.mark.parametrize("hm", [2, 4, 9, 10, 16, 36])
def test_compliance_matches_every_window_for_coprime_sizes(m, hm):
    # sizes whose lcm exceeds both: windows start at every offset gcd(m, hm) apart inside a group
    for n in range(1, m + 1):
        worst = _worst_window_by_enumeration(n, m, hm)
        for hn in range(1, hm + 1):
            assert NM(n, m).complies_with(NM(hn, hm)) == (worst <= hn), (n, m, hn, hm)


def test_group_size_is_bounded():
    from pgf_sim.core.pattern import MAX_M

    assert NM(1, MAX_M).m == 1024
    with pytest.raises(ConfigError, match="M must be <= 1024"):
        NM.parse("1:99999989")
    # the largest coprime sizes: the old lcm loop walked ~1e6 windows here; now ~1000 offsets
    assert NM(1, 1021).complies_with(NM(2, 1019))
    assert not NM(2, 1021).complies_with(NM(1, 1019))
