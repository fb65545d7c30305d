"""Mixed per-layer N:M assignment: the solvers against brute force, and a hand-made case."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pgf_sim.codesign.mixed import best_uniform, solve_brute_force, solve_exact, solve_greedy
from pgf_sim.core import ConfigError


def test_hand_made_case():
    # 3 layers x (2:4, 1:8, 1:16). Costs (ms) fall with sparsity; layer 0 is fragile.
    cost = np.array([[4.0, 2.0, 1.0],
                     [4.0, 2.0, 1.0],
                     [8.0, 4.0, 2.0]])
    pen = np.array([[0, 9, 30],
                     [0, 1, 2],
                     [0, 2, 5]])
    # budget 7: the sparsest choice for layers 1 and 2 (2 + 5 = 7 errors) and 2:4 for layer 0
    # costs 4 + 1 + 2 = 7 ms; any use of layer 0's 1:8 (9 errors) breaks the budget.
    a = solve_exact(cost, pen, 7)
    assert a.choice == (0, 2, 2) and a.cost == 7.0 and a.penalty == 7
    # uniform: 1:8 everywhere needs 9 + 1 + 2 = 12 > 7 errors, so only 2:4 (16 ms) fits
    u = best_uniform(cost, pen, 7)
    assert u.choice == (0, 0, 0) and u.cost == 16.0
    # budget 0: nothing may cost an error
    assert solve_exact(cost, pen, 0).choice == (0, 0, 0)


def test_infeasible_budget_is_an_error():
    with pytest.raises(ConfigError, match="no assignment fits"):
        solve_exact(np.ones((2, 2)), np.array([[1, 2], [1, 2]]), 1)
    with pytest.raises(ConfigError, match="whole numbers"):
        solve_exact(np.ones((1, 2)), np.array([[0.5, 1.0]]), 1)


tables = st.integers(1, 5).flatmap(lambda L: st.integers(1, 4).flatmap(lambda P: st.tuples(
    st.lists(st.lists(st.integers(0, 50), min_size=P, max_size=P), min_size=L, max_size=L),
    st.lists(st.lists(st.integers(0, 6), min_size=P, max_size=P), min_size=L, max_size=L),
    st.integers(0, 20),
)))


@settings(max_examples=300, deadline=None)
@given(tables)
def test_exact_and_greedy_vs_brute_force(t):
    cost, pen, budget = np.array(t[0], dtype=float), np.array(t[1]), t[2]
    try:
        ref = solve_brute_force(cost, pen, budget)
    except ConfigError:
        with pytest.raises(ConfigError):
            solve_exact(cost, pen, budget)
        with pytest.raises(ConfigError):
            solve_greedy(cost, pen, budget)
        return
    ex = solve_exact(cost, pen, budget)
    assert ex.penalty <= budget
    assert ex.cost == pytest.approx(ref.cost)
    # the reported totals are those of the reported choice
    rows = np.arange(cost.shape[0])
    assert ex.cost == pytest.approx(cost[rows, list(ex.choice)].sum())
    assert ex.penalty == pen[rows, list(ex.choice)].sum()
    gr = solve_greedy(cost, pen, budget)
    assert gr.penalty <= budget and gr.cost >= ref.cost - 1e-9
    uni = best_uniform(cost, pen, budget)
    if uni is not None:  # mixed never loses to the best uniform assignment
        assert ex.cost <= uni.cost + 1e-9
