"""Reaction networks of the lattice simulator (paper §IV, eq. 42).

A network is a list of species names and reaction strings, one rule each::

    "A -> 0 @ 1.5"        decay, rate 1.5 per A particle
    "A -> B @ 2"          conversion in place, rate per A particle
    "A -> 2A @ 30"        birth onto an empty neighbour, rate per A particle
    "0 -> A @ 0.1"        creation on an empty site
    "A + A -> 0 @ 0.01"   annihilation, probability per collision
    "A + B -> 2B @ 0.4"   conversion by collision, probability per collision
    "A + A -> A @ 0.1"    coalescence, probability per collision

Grammar: ``reactants -> products @ value``. Each side is ``0`` (nothing) or species terms joined
by ``+``; a term is an optional positive integer coefficient and a species name (``2A``, ``2 A``).
Rules with no or one reactant are *unimolecular*: ``value`` is a rate (>= 0, per reactant
particle; see ``dbdflow.simulate.ssa`` for the propensity of ``0 -> A``). Rules with two reactants
are *bimolecular*: ``value`` is the probability (in [0, 1]) that a hop of one reactant onto the
other makes them react. The lattice holds at most one particle per site, so a rule has at most two
reactants and at most two products, and creation (``0 -> X``) makes exactly one particle.

Products are placed by position (the simulator applies this):

* unimolecular ``A -> P1 + P2``: ``P1`` takes the parent's site, ``P2`` goes to an empty
  neighbour; ``A -> P`` converts the parent in place; ``A -> 0`` removes it;
* bimolecular ``R1 + R2 -> ...``: no product empties both sites; one product sits on the
  *target* site (the site hopped onto) and the mover's site empties; two products ``P1 + P2`` go
  ``P1`` to the site of ``R1`` and ``P2`` to the site of ``R2`` (in the ``paper`` semantics: ``P1``
  to the target, ``P2`` to the mover's site). A rule fires whichever of its reactants hops; when
  both reactants are the same species the mover counts as ``R1``.
* an *exchange* ``R1 + R2 -> R2 + R1`` (two different species) swaps the species of the two
  sites whichever hops. Identities stay with the sites (``dbdflow.simulate.ssa``): the particle on
  the target site, now of the mover's species, still hops later in the sweep if it had not
  hopped yet. In the ``paper`` placement (``P1`` to the target) it swaps only when ``R2`` hops
  onto ``R1``; when ``R1`` hops onto ``R2`` no site changes, but the target still counts as
  moved (paper item 2). Products equal to the reactants in the same order (``A -> A``,
  ``A + A -> 2A``, ``A + B -> A + B``) change no site in the standard placement and are
  rejected.

Several bimolecular rules may share a reactant pair; their probabilities must sum to at most 1
and a collision fires at most one of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TERM = re.compile(r"\s*(?:(\d+)\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\Z")
MAX_SPECIES = 127  # species codes live in int8 lattice states


@dataclass(frozen=True)
class Reaction:
    """One rule: reactant and product species names (written order) and its rate or probability."""

    reactants: tuple[str, ...]
    products: tuple[str, ...]
    value: float

    @property
    def order(self) -> int:
        return len(self.reactants)

    @property
    def is_bimolecular(self) -> bool:
        return self.order == 2

    def __str__(self) -> str:
        return f"{_side(self.reactants)} -> {_side(self.products)} @ {self.value!r}"


def _side(names: tuple[str, ...]) -> str:
    if not names:
        return "0"
    if len(names) == 2 and names[0] == names[1]:
        return f"2{names[0]}"
    return " + ".join(names)


def _parse_side(text: str, where: str) -> tuple[str, ...]:
    text = text.strip()
    if text in ("0", "∅"):
        return ()
    if not text:
        raise ValueError(f"{where}: empty side (write 0 for no particles)")
    names: list[str] = []
    for term in text.split("+"):
        match = _TERM.match(term)
        if match is None:
            raise ValueError(
                f"{where}: cannot read term {term.strip()!r} "
                "(expected a species name with an optional coefficient, e.g. 2A)"
            )
        coefficient = int(match.group(1)) if match.group(1) is not None else 1
        if coefficient < 1:
            raise ValueError(f"{where}: coefficient of {match.group(2)} must be >= 1")
        names.extend([match.group(2)] * coefficient)
    return tuple(names)


def parse_reaction(text: str, species: Sequence[str]) -> Reaction:
    """Parse one reaction string; ``ValueError`` names the string and what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"reaction must be a string like 'A -> 0 @ 1.5', got {text!r}")
    where = f"reaction {text!r}"
    if text.count("@") != 1:
        raise ValueError(f"{where}: needs exactly one '@ value' (a rate or probability)")
    body, value_text = text.split("@")
    if body.count("->") != 1 or body.replace("->", "").count(">") or "<" in body:
        raise ValueError(f"{where}: needs exactly one arrow '->' between reactants and products")
    left, right = body.split("->")
    reactants = _parse_side(left, where)
    products = _parse_side(right, where)
    for name in reactants + products:
        if name not in species:
            raise ValueError(f"{where}: unknown species {name!r} (species are {list(species)})")
    try:
        value = float(value_text)
    except ValueError:
        raise ValueError(f"{where}: value {value_text.strip()!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: value must be a finite number >= 0, got {value_text.strip()}")
    if len(reactants) > 2:
        raise ValueError(f"{where}: order {len(reactants)} > 2 (at most two reactants meet)")
    if len(products) > 2:
        raise ValueError(f"{where}: {len(products)} products (single occupancy allows at most two)")
    if not reactants and len(products) != 1:
        raise ValueError(f"{where}: creation from 0 must make exactly one particle")
    if reactants == products:
        # each product would take its own reactant's site (module docstring), so no site
        # changes; a two-species rule with the products swapped, 'A + B -> B + A', is an exchange
        if len(set(reactants)) == 2:
            a, b = reactants
            raise ValueError(
                f"{where}: the products are the reactants in the same order and each takes "
                "its reactant's site (P1 that of R1, P2 that of R2), so the rule changes no "
                f"site; an exchange is written '{a} + {b} -> {b} + {a}'"
            )
        raise ValueError(f"{where}: the products equal the reactants, so the rule changes no site")
    if len(reactants) == 2 and value > 1:
        raise ValueError(
            f"{where}: bimolecular value is a probability per collision, must be in [0, 1]"
        )
    return Reaction(reactants, products, value)


@dataclass(frozen=True)
class ReactionNetwork:
    """Species (codes 1..M in this order; 0 is an empty site) and reaction rules.

    Attributes
    ----------
    species : tuple of str
    reactions : tuple of Reaction, in the given order
    unimolecular, bimolecular : the rules of order <= 1 and of order 2
    """

    species: tuple[str, ...]
    reactions: tuple[Reaction, ...]

    @classmethod
    def parse(cls, species: Sequence[str], reactions: Sequence[str]) -> ReactionNetwork:
        """Build a network from species names and reaction strings (module docstring grammar)."""
        if isinstance(species, str) or not all(isinstance(s, str) for s in species):
            raise ValueError(f"species must be a list of names, got {species!r}")
        species = tuple(species)
        if not 1 <= len(species) <= MAX_SPECIES:
            raise ValueError(f"species: need 1 to {MAX_SPECIES} names, got {len(species)}")
        for name in species:
            if not _NAME.match(name):
                raise ValueError(
                    f"species name {name!r} must start with a letter or _ and contain only "
                    "letters, digits and _"
                )
        if len(set(species)) != len(species):
            raise ValueError(f"species names must be unique, got {list(species)}")
        if isinstance(reactions, str):
            raise ValueError("reactions must be a list of strings, got a single string")
        parsed = tuple(parse_reaction(text, species) for text in reactions)
        network = cls(species, parsed)
        network._check_pairs(list(reactions))
        return network

    def _check_pairs(self, texts: list[str]) -> None:
        total: dict[tuple[str, ...], float] = {}
        names: dict[tuple[str, ...], list[str]] = {}
        for text, reaction in zip(texts, self.reactions, strict=True):
            if reaction.is_bimolecular:
                pair = tuple(sorted(reaction.reactants))
                total[pair] = total.get(pair, 0.0) + reaction.value
                names.setdefault(pair, []).append(text)
        for pair, p in total.items():
            if p > 1 + 1e-12:
                raise ValueError(
                    f"reactions {names[pair]}: probabilities for the pair {' + '.join(pair)} "
                    f"sum to {p:g} > 1"
                )

    @property
    def unimolecular(self) -> tuple[Reaction, ...]:
        return tuple(r for r in self.reactions if not r.is_bimolecular)

    @property
    def bimolecular(self) -> tuple[Reaction, ...]:
        return tuple(r for r in self.reactions if r.is_bimolecular)

    @property
    def n_species(self) -> int:
        return len(self.species)

    def code(self, name: str) -> int:
        """Lattice code of a species (1..M); 0 is an empty site."""
        if name not in self.species:
            raise ValueError(f"unknown species {name!r} (species are {list(self.species)})")
        return self.species.index(name) + 1

    def to_dict(self) -> dict:
        """``{"species": [...], "reactions": [str, ...]}``; ``from_dict`` inverts it."""
        return {"species": list(self.species), "reactions": [str(r) for r in self.reactions]}

    @classmethod
    def from_dict(cls, data: dict) -> ReactionNetwork:
        try:
            return cls.parse(data["species"], data["reactions"])
        except (KeyError, TypeError):
            raise ValueError(
                f"reaction network needs keys 'species' and 'reactions', got {data!r}"
            ) from None

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.reactions)

    def unimolecular_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat arrays of the unimolecular rules for the kernels.

        Returns ``reactant`` (int64 code, 0 for creation), ``rate`` (float64), ``first`` (code of
        the species left on the parent site, or put on the chosen empty site by creation; 0 when
        the parent is removed) and ``second`` (code placed on an empty neighbour, 0 for none).
        """
        rules = self.unimolecular
        codes = np.zeros((len(rules), 3), dtype=np.int64)
        for i, rule in enumerate(rules):
            codes[i, 0] = self.code(rule.reactants[0]) if rule.reactants else 0
            for j, name in enumerate(rule.products):
                codes[i, 1 + j] = self.code(name)
        rate = np.array([r.value for r in rules], dtype=np.float64)
        reactant, first, second = codes.T.copy()
        return reactant, rate, first, second

    def bimolecular_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat arrays of the bimolecular rules: ``reactants`` (n, 2) codes, ``probability``,
        ``n_products`` and ``products`` (n, 2) codes (0-padded), all in written order."""
        rules = self.bimolecular
        n = len(rules)
        reactants = np.zeros((n, 2), dtype=np.int64)
        products = np.zeros((n, 2), dtype=np.int64)
        n_products = np.zeros(n, dtype=np.int64)
        for i, rule in enumerate(rules):
            reactants[i] = [self.code(s) for s in rule.reactants]
            n_products[i] = len(rule.products)
            for j, name in enumerate(rule.products):
                products[i, j] = self.code(name)
        probability = np.array([r.value for r in rules], dtype=np.float64)
        return reactants, probability, n_products, products

    def collisions(self, paper: bool = False) -> list[tuple[int, int, float, int, int]]:
        """Every way a hop can react: ``(mover, target, probability, at_origin, at_target)``
        species codes, for the mover's site (origin) and the target site after the reaction.

        A rule fires whichever reactant hops. No product empties both sites; one product lands on
        the target; two products ``P1 + P2`` go to the sites of ``R1`` and ``R2`` (the mover is
        ``R1`` when both reactants are the same species). ``paper`` semantics put ``P1`` on the
        target and ``P2`` on the origin whoever moved, as the original simulator did.
        """
        out = []
        reactants, probability, n_products, products = self.bimolecular_arrays()
        for (r1, r2), p, n_prod, (p1, p2) in zip(
            reactants, probability, n_products, products, strict=True
        ):
            for mover, target, mover_is_first in ((r1, r2, True), (r2, r1, False)):
                if mover == target and not mover_is_first:
                    continue
                if n_prod == 0:
                    at_origin, at_target = 0, 0
                elif n_prod == 1:
                    at_origin, at_target = 0, p1
                elif paper:
                    at_origin, at_target = p2, p1
                else:
                    at_origin, at_target = (p1, p2) if mover_is_first else (p2, p1)
                out.append((int(mover), int(target), float(p), int(at_origin), int(at_target)))
        return out
