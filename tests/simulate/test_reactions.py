import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.simulate import Reaction, ReactionNetwork

SPECIES = ["A", "B", "C"]
# the reactions of paper eq. 42, as the shipped Rössler config states them
ROSSLER = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "config/paper/rossler_3d.yaml").read_text()
)["reactions"]


def test_parse_orders_values_and_arrays():
    net = ReactionNetwork.parse(SPECIES, [*ROSSLER, "0 -> B @ 0.1", "B -> C @ 2"])
    assert net.species == ("A", "B", "C")
    assert [r.order for r in net.reactions] == [1, 2, 2, 2, 1, 1, 2, 0, 1]
    assert net.reactions[0] == Reaction(("A",), ("A", "A"), 30.0)
    assert net.reactions[2] == Reaction(("A", "B"), ("B", "B"), 0.4)
    assert net.reactions[3] == Reaction(("A", "C"), (), 0.24)
    assert len(net.unimolecular) == 5 and len(net.bimolecular) == 4
    assert net.code("A") == 1 and net.code("C") == 3

    reactant, rate, first, second = net.unimolecular_arrays()
    # A -> 2A, B -> 0, C -> 2C, 0 -> B, B -> C
    assert reactant.tolist() == [1, 2, 3, 0, 2]
    assert rate.tolist() == [30.0, 10.0, 16.5, 0.1, 2.0]
    assert first.tolist() == [1, 0, 3, 2, 3]
    assert second.tolist() == [1, 0, 3, 0, 0]
    reactants, probability, n_products, products = net.bimolecular_arrays()
    assert reactants.tolist() == [[1, 1], [1, 2], [1, 3], [3, 3]]
    assert probability.tolist() == [0.1, 0.4, 0.24, 0.36]
    assert n_products.tolist() == [1, 2, 0, 1]
    assert products.tolist() == [[1, 0], [2, 2], [0, 0], [3, 0]]


def test_string_and_dict_round_trip():
    extra = ["0 -> B @ 0.125", "B -> C + A @ 2", "A + B -> C + A @ 0.5", "2 B -> 0 @ 1"]
    texts = [*ROSSLER, *extra]
    net = ReactionNetwork.parse(SPECIES, texts)
    again = ReactionNetwork.from_dict(net.to_dict())
    assert again == net
    assert ReactionNetwork.parse(SPECIES, str(net).splitlines()) == net
    assert str(net.reactions[0]) == "A -> 2A @ 30.0"
    assert str(net.reactions[8]) == "B -> C + A @ 2.0"  # product order is kept
    assert net.to_dict()["species"] == SPECIES


@pytest.mark.parametrize(
    "text, why",
    [
        ("A -> X @ 1", "unknown species 'X'"),
        ("A => B @ 1", "arrow"),
        ("A <-> B @ 1", "arrow"),
        ("A -> B -> C @ 1", "arrow"),
        ("A -> B", "@"),
        ("A -> B @ 1 @ 2", "@"),
        ("A -> B @ -1", ">= 0"),
        ("A -> B @ nan", "finite"),
        ("A -> B @ inf", "finite"),
        ("A -> B @ fast", "not a number"),
        ("A + B -> 0 @ 1.5", r"\[0, 1\]"),
        ("A + A + A -> 0 @ 1", "order 3"),
        ("3A -> 0 @ 1", "order 3"),
        ("A -> 3A @ 1", "3 products"),
        ("0 -> 0 @ 1", "exactly one"),
        ("0 -> 2A @ 1", "exactly one"),
        ("A -> A @ 1", "changes no site"),
        ("A + A -> 2A @ 0.5", "changes no site"),
        ("A + B -> A + B @ 0.5", r"changes no site; an exchange is written 'A \+ B -> B \+ A'"),
        ("A + -> B @ 1", "cannot read"),
        ("-> B @ 1", "empty side"),
        ("0A -> B @ 1", "coefficient"),
        ("A -> B! @ 1", "cannot read"),
    ],
)
def test_malformed_reaction_names_the_reaction(text, why):
    with pytest.raises(ValueError, match=re.escape(repr(text))) as info:
        ReactionNetwork.parse(SPECIES, [text])
    assert re.search(why, str(info.value))


def test_exchange_is_a_rule_and_swaps_the_sites():
    # products are the reactants swapped: P1 = B goes to A's site, P2 = A to B's site
    net = ReactionNetwork.parse(SPECIES, ["A + B -> B + A @ 0.25", "C + A -> A + C @ 0.5"])
    a, b, c = 1, 2, 3
    # (mover, target, probability, species left on the mover's site, on the target site)
    assert net.collisions() == [
        (a, b, 0.25, b, a), (b, a, 0.25, a, b), (c, a, 0.5, a, c), (a, c, 0.5, c, a)
    ]  # fmt: skip
    # paper placement (P1 to the target, P2 to the mover's site): a swap only when R2 moves
    assert net.collisions(paper=True) == [
        (a, b, 0.25, a, b), (b, a, 0.25, a, b), (c, a, 0.5, c, a), (a, c, 0.5, c, a)
    ]  # fmt: skip


def test_negative_zero_rate_is_zero():
    # -0.0 == 0 passes the ">= 0" check and acts as a zero rate (no propensity, never fires)
    rule = ReactionNetwork.parse(SPECIES, ["A -> B @ -0", "A + B -> 0 @ -0.0"]).reactions
    assert [r.value for r in rule] == [0.0, 0.0]


def test_probabilities_of_one_pair_must_sum_to_at_most_one():
    rules = ["A + B -> 0 @ 0.6", "B + A -> 2B @ 0.5"]
    with pytest.raises(ValueError, match=r"sum to 1\.1 > 1") as info:
        ReactionNetwork.parse(SPECIES, rules)
    assert all(rule in str(info.value) for rule in rules)
    ReactionNetwork.parse(SPECIES, ["A + B -> 0 @ 0.5", "B + A -> 2B @ 0.5", "A + A -> 0 @ 1"])


@pytest.mark.parametrize(
    "species, reactions, why",
    [
        ("AB", [], "list of names"),
        ([], [], "1 to 127"),
        (["A", "A"], [], "unique"),
        (["A", "2B"], [], "must start with a letter"),
        (["A", "0"], [], "must start with a letter"),
        (["A"], "A -> 0 @ 1", "single string"),
        (["A"], [3], "must be a string"),
    ],
)
def test_bad_species_or_reaction_lists(species, reactions, why):
    with pytest.raises(ValueError, match=why):
        ReactionNetwork.parse(species, reactions)


def test_from_dict_needs_both_keys():
    with pytest.raises(ValueError, match="'species' and 'reactions'"):
        ReactionNetwork.from_dict({"species": ["A"]})


names = st.sampled_from(SPECIES)


@settings(max_examples=60, deadline=None)
@given(
    reactants=st.lists(names, max_size=2),
    products=st.lists(names, max_size=2),
    value=st.floats(0, 1, allow_nan=False),
)
def test_any_valid_rule_round_trips(reactants, products, value):
    if (not reactants and len(products) != 1) or reactants == products:
        return
    text = f"{' + '.join(reactants) or '0'} -> {' + '.join(products) or '0'} @ {value!r}"
    rule = ReactionNetwork.parse(SPECIES, [text]).reactions[0]
    assert rule == Reaction(tuple(reactants), tuple(products), value)
    assert ReactionNetwork.parse(SPECIES, [str(rule)]).reactions[0] == rule
    assert np.isclose(rule.value, value)
