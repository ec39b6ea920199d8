"""One hop sweep against an exact enumeration of its documented semantics on tiny lattices.

The reference below is written from the docstrings alone: every particle present at the start
hops once in a uniformly random order (all n! orders enumerated), picks a direction (standard:
any of the 2·d, off-lattice = stay; paper: an in-lattice one), moves into an empty site or
collides; a collision fires rule i of the pair with probability p_i. Products: none, one on the
target, or two on the reactants' sites (paper: P1 on the target, P2 on the mover's site).
Standard: a product on a reactant's site continues that particle (a pending target still hops);
paper: products are new particles that do not hop in this sweep.
"""

import itertools
from collections import Counter

import numpy as np
import pytest
from simulate_stats import assert_distribution

from dbdflow.simulate import Lattice, ReactionNetwork, run

SPECIES = ["A", "B", "C"]
RULES = ["A + B -> C + A @ 0.5", "B + A -> 0 @ 0.25", "A + A -> B @ 0.5", "A + C -> C @ 0.7"]


def _neighbour_lists(shape, boundary):
    coords = list(itertools.product(*(range(n) for n in shape)))
    index = {c: i for i, c in enumerate(coords)}
    table = []
    for c in coords:
        row = []
        for axis in range(len(shape)):
            for step in (-1, 1):
                moved = list(c)
                moved[axis] += step
                if boundary == "periodic":
                    moved[axis] %= shape[axis]
                row.append(index.get(tuple(moved), -1))
        table.append(row)
    return table


def _rules(texts):
    network = ReactionNetwork.parse(SPECIES, texts)
    code = {name: i + 1 for i, name in enumerate(SPECIES)}
    return [
        ([code[s] for s in r.reactants], [code[s] for s in r.products], r.value)
        for r in network.bimolecular
    ]


def _outcomes(mover, target, rules, paper):
    """(probability, species on the mover's site, on the target site) of each rule that fires."""
    result = []
    for (r1, r2), products, p in rules:
        if (mover, target) == (r1, r2):
            mover_first = True
        elif (mover, target) == (r2, r1):
            mover_first = False
        else:
            continue
        if not products:
            result.append((p, 0, 0))
        elif len(products) == 1:
            result.append((p, 0, products[0]))
        elif paper:
            result.append((p, products[1], products[0]))
        else:
            p1, p2 = products
            result.append((p, p1, p2) if mover_first else (p, p2, p1))
    return result


def exact_sweep(initial, table, rules, paper):
    """Exact distribution of the state after one sweep (no unimolecular rules)."""
    dist = Counter()
    start = [s for s, c in enumerate(initial) if c]

    def go(species, ids, order, weight, fresh):
        if not order:
            dist[tuple(species)] += weight
            return
        pid, rest = order[0], order[1:]
        if pid not in ids:  # removed, or replaced by products
            go(species, ids, rest, weight, fresh)
            return
        s = ids.index(pid)
        directions = [t for t in table[s] if t >= 0] if paper else table[s]
        for t in directions:
            w = weight / len(directions)
            if t < 0:
                go(species, ids, rest, w, fresh)
            elif species[t] == 0:
                sp, ii = species.copy(), ids.copy()
                sp[t], sp[s], ii[t], ii[s] = sp[s], 0, pid, None
                go(sp, ii, rest, w, fresh)
            else:
                fired = _outcomes(species[s], species[t], rules, paper)
                for p, at_mover, at_target in fired:
                    sp, ii = species.copy(), ids.copy()
                    sp[s], sp[t] = at_mover, at_target
                    for site, new in ((s, at_mover), (t, at_target)):
                        if new == 0:
                            ii[site] = None
                        elif paper:  # a new particle that has used its hop
                            ii[site] = f"product{fresh}"
                            fresh += 1
                    go(sp, ii, rest, w * p, fresh)
                go(species, ids, rest, w * (1 - sum(p for p, _, _ in fired)), fresh)

    orders = list(itertools.permutations(range(len(start))))
    ids = [start.index(s) if s in start else None for s in range(len(initial))]
    for order in orders:
        go(list(initial), ids, order, 1 / len(orders), 0)
    return dist


@pytest.mark.parametrize("semantics", ["standard", "paper"])
@pytest.mark.parametrize(
    "shape, boundary, initial",
    [
        ((5,), "reflecting", [1, 2, 0, 1, 3]),
        ((3, 3), "periodic", [1, 0, 2, 0, 1, 0, 0, 3, 0]),
        ((2, 3), "reflecting", [1, 1, 0, 2, 0, 0]),
    ],
)
def test_one_sweep_matches_enumeration(shape, boundary, initial, semantics):
    paper = semantics == "paper"
    expected = exact_sweep(initial, _neighbour_lists(shape, boundary), _rules(RULES), paper)
    assert np.isclose(sum(expected.values()), 1.0)
    n = 20000
    states = run(
        ReactionNetwork.parse(SPECIES, RULES),
        Lattice(shape, boundary),
        np.tile(np.array(initial, np.int8), (n, 1)),
        1,
        0.1,
        np.random.default_rng(sum(initial) + len(shape) + paper),
        semantics=semantics,
    )
    assert_distribution(Counter(map(tuple, states[:, 1].tolist())), dict(expected), n)


def test_semantics_differ_where_documented():
    # the enumeration itself must tell the semantics apart, or the test above could not fail
    table = _neighbour_lists((5,), "reflecting")
    standard = exact_sweep([1, 2, 0, 1, 3], table, _rules(RULES), False)
    paper = exact_sweep([1, 2, 0, 1, 3], table, _rules(RULES), True)
    assert max(abs(standard[k] - paper[k]) for k in set(standard) | set(paper)) > 0.05


# exchanges: the products are the reactants swapped, so a collision swaps the two species
# in both written orders (the paper placement swaps only when R2 hops onto R1)
EXCHANGE = [
    "B + A -> A + B @ 0.6",
    "C + B -> B + C @ 1",
    "A + C -> C + A @ 0.3",
    "A + A -> C @ 0.5",
]


@pytest.mark.parametrize("semantics", ["standard", "paper"])
@pytest.mark.parametrize(
    "shape, boundary, initial",
    [((5,), "reflecting", [2, 1, 0, 3, 1]), ((3, 3), "periodic", [1, 2, 0, 0, 3, 0, 0, 1, 0])],
)
def test_exchange_sweep_matches_enumeration(shape, boundary, initial, semantics):
    paper = semantics == "paper"
    expected = exact_sweep(initial, _neighbour_lists(shape, boundary), _rules(EXCHANGE), paper)
    n = 20000
    states = run(ReactionNetwork.parse(SPECIES, EXCHANGE), Lattice(shape, boundary),
                 np.tile(np.array(initial, np.int8), (n, 1)), 1, 0.1,
                 np.random.default_rng(7 + len(shape) + paper), semantics=semantics)  # fmt: skip
    assert_distribution(Counter(map(tuple, states[:, 1].tolist())), dict(expected), n)


@pytest.mark.parametrize("rule", ["B + A -> A + B @ 0.6", "A + B -> B + A @ 0.6"])
@pytest.mark.parametrize("semantics", ["standard", "paper"])
def test_exchange_swaps_with_its_probability(rule, semantics):
    """Two sites [B, A] of a reflecting chain, one sweep, the exchange fires with p = 0.6.
    Standard: each particle hops towards the other with probability 1/2 (the other direction
    leaves the lattice: rejected) and both get their attempt whatever happens (identities stay
    with the sites), so each swaps with probability p/2 and the sites end swapped when exactly
    one does: 2 (p/2)(1 - p/2). Paper: a particle picks among its in-lattice neighbours (item
    5), so it always hops onto the other; only a hop of R2 onto R1 swaps (P1 goes to the
    target), R1 onto R2 changes no site but spends R2's hop (item 2). R2 first (1/2): swaps with
    probability p; R1 first (1/2): R2 keeps its hop with probability 1 - p, then swaps with p:
    (p + (1 - p) p) / 2. Both are p (1 - p/2) = 0.42."""
    p = 0.6
    swapped = 2 * (p / 2) * (1 - p / 2) if semantics == "standard" else (p + (1 - p) * p) / 2
    n = 40000
    states = run(ReactionNetwork.parse(SPECIES, [rule]), Lattice((2,), "reflecting"),
                 np.tile(np.array([2, 1], np.int8), (n, 1)), 1, 0.1, np.random.default_rng(3),
                 semantics=semantics)  # fmt: skip
    outcomes = Counter(map(tuple, states[:, 1].tolist()))
    assert_distribution(outcomes, {(1, 2): swapped, (2, 1): 1 - swapped}, n)


def test_exchanged_target_keeps_its_hop():
    """[B, A, 0] on a reflecting chain, B + A -> A + B with probability 1, one standard sweep.
    The particle on the target site keeps its identity and its pending hop, now as the mover's
    species: when B goes first and swaps (probability 1/4), the B now on site 1 hops again,
    onto the A (swap back) or to the empty site 2, so B ends on site 2 with probability 1/8.
    Enumerating the 2 orders x 2 x 2 directions by hand gives the distribution below."""
    rule = ["B + A -> A + B @ 1"]
    expected = {(1, 2, 0): 2 / 8, (2, 0, 1): 2 / 8, (2, 1, 0): 2 / 8, (1, 0, 2): 1 / 8,
                (0, 2, 1): 1 / 8}  # fmt: skip
    table = _neighbour_lists((3,), "reflecting")
    assert dict(exact_sweep([2, 1, 0], table, _rules(rule), False)) == pytest.approx(expected)
    n = 20000
    initial = np.tile(np.array([2, 1, 0], np.int8), (n, 1))
    states = run(ReactionNetwork.parse(SPECIES, rule), Lattice((3,), "reflecting"), initial, 1,
                 0.1, np.random.default_rng(5))  # fmt: skip
    assert_distribution(Counter(map(tuple, states[:, 1].tolist())), expected, n)
