"""Numba kernels for one lattice trajectory; ``dbdflow.simulate.ssa`` documents the semantics.

Data structures (per trajectory, O(sites) memory; the cost of hops and events is stated in
``dbdflow.simulate.ssa``: ``_schedule`` sums the unimolecular propensities, ``_parent`` draws a
parent from a list or, paper item 6, by the plane -> row -> site rejection loop):

* ``state[site]``: species code, 0 empty.
* ``occ[:n_occ]``: the occupied sites, ``opos[site]`` the position of a site in ``occ``. A sweep
  shuffles ``occ`` (Fisher-Yates) and walks it in order; a particle removed during the sweep
  leaves ``DEAD`` in its entry, a particle that counts as moved (paper products) is stored as
  ``-2 - site``; the list is compacted after the sweep.
* ``lists[r, :lsize[r]]``: the sites of species ``code`` with ``row_of[code] = r`` (species that
  are parents of unimolecular events; code 0 lists empty sites for ``0 -> A``), ``lpos[site]``
  the position of a site in its list.
* paper item 6: ``scan[r, :n_planes]`` counts list ``r``'s species per axis-0 plane and
  ``scan[r, n_planes:]`` per row, the lattice seen as (planes, rows, sites per row).

Every call of a compiled function costs numba reference counting on its array arguments, so the
work per hop and per event is written out inside ``_sweep`` and ``_unimolecular`` (called once
per step), which call only ``_set_site``, ``_schedule`` and ``_parent``.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

PAPER_PARENT_ATTEMPTS = 20
PERIODIC, REJECT, IN_LATTICE = 0, 1, 2  # how a hop treats the lattice edge
DEAD = -1
AHEAD = 16  # entries ahead of the sweep whose memory is prefetched


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask the CPU to load ``array[index]`` into cache; changes no result, only hides latency."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, view, [args[1]], wraparound=False
        )
        i32 = ir.IntType(32)
        byte_pointer = ir.IntType(8).as_pointer()
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, function_type, "llvm.prefetch.p0")
        # read access, keep in all cache levels, data cache
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@numba.njit(cache=True)
def trajectory(
    initial, out, n_steps, record_every, dt, rng,
    edge, offset, wrap, mode, reactant, rate, first, second,
    pair_start, pair_cum, pair_origin, pair_target, row_of,
    n_planes, n_rows_per_plane, n_per_row, paper,
):  # fmt: skip
    """Simulate from ``initial``, writing ``out[r]`` (the state after r * record_every steps);
    returns the number of hop attempts."""
    n_sites = initial.shape[0]
    m1 = row_of.shape[0]
    n_lists = 0
    for c in range(m1):
        if row_of[c] >= 0:
            n_lists += 1

    state = initial.copy()
    counts = np.zeros(m1, dtype=np.int64)
    occ = np.empty(n_sites, dtype=np.int32)
    opos = np.empty(n_sites, dtype=np.int32)
    frac = np.empty(n_sites, dtype=np.float64)
    lists = np.empty((n_lists, n_sites), dtype=np.int32)
    lsize = np.zeros(n_lists, dtype=np.int64)
    lpos = np.empty(n_sites if n_lists > 0 else 0, dtype=np.int32)
    scan = np.zeros((n_lists, n_planes * (1 + n_rows_per_plane)), dtype=np.int32)
    n_occ = 0
    for s in range(n_sites):
        c = state[s]
        counts[c] += 1
        if c != 0:
            occ[n_occ] = s
            opos[s] = n_occ
            n_occ += 1
        r = row_of[c]
        if r >= 0:
            lists[r, lsize[r]] = s
            lpos[s] = lsize[r]
            lsize[r] += 1
            if n_planes > 0 and c != 0:
                scan[r, s // n_per_row // n_rows_per_plane] += 1
                scan[r, n_planes + s // n_per_row] += 1
    out[0, :] = state

    hops = 0
    pending = -1  # paper item 3: the scheduled unimolecular rule and its absolute time
    t_pending = 0.0
    for step in range(n_steps):
        if rate.shape[0] > 0:
            n_occ, pending, t_pending = _unimolecular(
                step, dt, rng, paper, pending, t_pending, n_occ, state, counts, occ, opos,
                row_of, lists, lsize, lpos, scan, n_rows_per_plane, n_per_row,
                edge, offset, wrap, mode, reactant, rate, first, second,
            )  # fmt: skip
        n_occ, n_hops = _sweep(
            rng, paper, n_occ, state, counts, occ, opos, frac,
            row_of, lists, lsize, lpos, scan, n_rows_per_plane, n_per_row,
            edge, offset, wrap, mode, pair_start, pair_cum, pair_origin, pair_target,
        )  # fmt: skip
        hops += n_hops
        if (step + 1) % record_every == 0:
            out[(step + 1) // record_every, :] = state
    return hops


@numba.njit(cache=True)
def _unimolecular(
    step, dt, rng, paper, pending, t_pending, n_occ, state, counts, occ, opos,
    row_of, lists, lsize, lpos, scan, n_rows_per_plane, n_per_row,
    edge, offset, wrap, mode, reactant, rate, first, second,
):  # fmt: skip
    """Gillespie's direct method over [step dt, (step + 1) dt). Standard: events drawn afresh
    from the step's start; paper: the pending (rule, time) carries over (item 3). Returns the new
    (n_occ, pending, t_pending)."""
    t_end = (step + 1) * dt
    if not paper or pending < 0:
        pending, t_pending = _schedule(step * dt, rng.random(), rng.random(), reactant, rate,
                                       first, counts, paper)  # fmt: skip
    attempts = PAPER_PARENT_ATTEMPTS if paper else 1
    while pending >= 0 and t_pending < t_end:
        site, target = _parent(
            rng, attempts, second[pending] != 0, row_of[reactant[pending]], reactant[pending],
            state, lists, lsize, scan, n_rows_per_plane, n_per_row, edge, offset, wrap, mode,
        )  # fmt: skip
        if site >= 0:
            n_occ = _set_site(
                site, first[pending], n_occ, False, state, counts, occ, opos,
                row_of, lists, lsize, lpos, scan, n_rows_per_plane, n_per_row,
            )  # fmt: skip
        if target >= 0:
            n_occ = _set_site(
                target, second[pending], n_occ, False, state, counts, occ, opos,
                row_of, lists, lsize, lpos, scan, n_rows_per_plane, n_per_row,
            )  # fmt: skip
        pending, t_pending = _schedule(t_pending, rng.random(), rng.random(), reactant, rate,
                                       first, counts, paper)  # fmt: skip
    return n_occ, pending, t_pending


@numba.njit(cache=True)
def _sweep(
    rng, paper, n_occ, state, counts, occ, opos, frac,
    row_of, lists, lsize, lpos, scan, n_rows_per_plane, n_per_row,
    edge, offset, wrap, mode, pair_start, pair_cum, pair_origin, pair_target,
):  # fmt: skip
    """Every particle present now hops once, in uniformly random order. Returns the new number
    of particles and the number of hop attempts."""
    n_dir = offset.shape[0]
    m1 = row_of.shape[0]
    n_planes = scan.shape[1] // (1 + n_rows_per_plane)
    n = n_occ
    # uniformly random order; each draw's leftover fraction (uniform, independent of the pick)
    # chooses the hop direction of the particle it picked
    for i in range(n):
        x = rng.random() * (n - i)
        jump = int(x)
        frac[i] = x - jump
        j = min(i + jump, n - 1)
        picked = occ[j]
        occ[j] = occ[i]
        occ[i] = picked
    for i in range(n):
        opos[occ[i]] = i

    hops = 0
    for k in range(n):
        if k + AHEAD < n and occ[k + AHEAD] >= 0:
            ahead = occ[k + AHEAD]
            _prefetch(state, ahead)
            _prefetch(edge, ahead)
            _prefetch(opos, ahead)
        if k + AHEAD // 2 < n and occ[k + AHEAD // 2] >= 0:
            ahead = occ[k + AHEAD // 2]
            if edge[ahead] == 0:
                ahead += offset[int(frac[k + AHEAD // 2] * n_dir)]
                _prefetch(state, ahead)
                _prefetch(opos, ahead)
        s = occ[k]
        if s < 0:  # removed, or a product that counts as moved (paper)
            continue
        hops += 1
        # the direction takes the integer part of frac * (number of choices); what is left over
        # is again uniform and independent, and decides a collision's reaction
        e = edge[s]
        if e == 0:
            x = frac[k] * n_dir
            d = int(x)
            target = s + offset[d]
        elif mode == IN_LATTICE:  # paper item 5: the pick-th of the in-lattice directions
            n_in = 0
            for d in range(n_dir):
                n_in += 1 - ((e >> d) & 1)
            x = frac[k] * n_in
            pick = int(x)
            target = -1
            for d in range(n_dir):
                if not (e >> d) & 1:
                    if pick == 0:
                        target = s + offset[d]
                        break
                    pick -= 1
            if target < 0:  # a lattice of one site along every axis
                continue
        else:
            x = frac[k] * n_dir
            d = int(x)
            if not (e >> d) & 1:
                target = s + offset[d]
            elif mode == PERIODIC:
                target = s + wrap[d]
            else:  # off a reflecting lattice: rejected
                continue
        c = state[s]
        ct = state[target]
        if ct == 0:  # move
            state[target] = c
            state[s] = 0
            occ[k] = target
            opos[target] = k
            if lpos.shape[0] > 0:  # swap the two sites in the lists of c and of empty sites
                ks, kt = lpos[s], lpos[target]
                lpos[s], lpos[target] = kt, ks
                r = row_of[c]
                if r >= 0:
                    lists[r, ks] = target
                    if n_planes > 0:  # paper item 6: move the plane and row counts
                        row, new_row = s // n_per_row, target // n_per_row
                        scan[r, row // n_rows_per_plane] -= 1
                        scan[r, n_planes + row] -= 1
                        scan[r, new_row // n_rows_per_plane] += 1
                        scan[r, n_planes + new_row] += 1
                if row_of[0] >= 0:
                    lists[row_of[0], kt] = s
            continue
        p0 = pair_start[c * m1 + ct]
        p1 = pair_start[c * m1 + ct + 1]
        if p0 == p1:  # no rule for this pair: stay
            continue
        u = x - int(x)
        rule = p0
        while rule < p1 and u >= pair_cum[rule]:
            rule += 1
        if rule == p1:  # no reaction: stay
            continue
        n_occ = _set_site(
            s, pair_origin[rule], n_occ, True, state, counts, occ, opos,
            row_of, lists, lsize, lpos, scan, n_rows_per_plane, n_per_row,
        )  # fmt: skip
        n_occ = _set_site(
            target, pair_target[rule], n_occ, True, state, counts, occ, opos,
            row_of, lists, lsize, lpos, scan, n_rows_per_plane, n_per_row,
        )  # fmt: skip
        kt = opos[target]
        if paper and pair_target[rule] != 0 and kt > k and occ[kt] >= 0:
            occ[kt] = -2 - target  # paper item 2: the product counts as moved

    # compact: fill the DEAD entries below n_occ with live entries from above, unmark the rest
    src = n_occ
    for k in range(n_occ):
        v = occ[k]
        if v == DEAD:
            while occ[src] == DEAD:
                src += 1
            v = occ[src]
            src += 1
            site = v if v >= 0 else -2 - v
            occ[k] = site
            opos[site] = k
        elif v < DEAD:
            occ[k] = -2 - v
    return n_occ, hops


@numba.njit(cache=True)
def _set_site(
    site, new, n_occ, sweeping, state, counts, occ, opos,
    row_of, lists, lsize, lpos, scan, n_rows_per_plane, n_per_row,
):  # fmt: skip
    """Put species ``new`` on ``site`` and update counts, lists and the occupied list (during a
    sweep a removed particle's entry becomes DEAD). Returns the new number of particles."""
    old = state[site]
    if old == new:
        return n_occ
    state[site] = new
    n_planes = scan.shape[1] // (1 + n_rows_per_plane)
    row = site // n_per_row
    counts[old] -= 1
    r = row_of[old]
    if r >= 0:
        k = lpos[site]
        last = lists[r, lsize[r] - 1]
        lists[r, k] = last
        lpos[last] = k
        lsize[r] -= 1
        if n_planes > 0 and old != 0:
            scan[r, row // n_rows_per_plane] -= 1
            scan[r, n_planes + row] -= 1
    counts[new] += 1
    r = row_of[new]
    if r >= 0:
        lists[r, lsize[r]] = site
        lpos[site] = lsize[r]
        lsize[r] += 1
        if n_planes > 0 and new != 0:
            scan[r, row // n_rows_per_plane] += 1
            scan[r, n_planes + row] += 1
    if new == 0 and old != 0:
        k = opos[site]
        if sweeping:
            occ[k] = DEAD
        else:
            last = occ[n_occ - 1]
            occ[k] = last
            opos[last] = k
        n_occ -= 1
    elif old == 0 and new != 0:  # only outside sweeps: collisions create no particle
        occ[n_occ] = site
        opos[site] = n_occ
        n_occ += 1
    return n_occ


@numba.njit(cache=True)
def _schedule(t, u_time, u_rule, reactant, rate, first, counts, paper):
    """Direct-method draw from time ``t`` with two uniforms: (rule, event time), or (-1, t) when
    every propensity vanishes. Paper item 4: ``0 -> A`` has propensity k max(n_A, 1)."""
    total = 0.0
    for r in range(rate.shape[0]):
        total += rate[r] * (
            max(counts[first[r]], 1) if paper and reactant[r] == 0 else counts[reactant[r]]
        )
    if total <= 0.0:
        return -1, t
    u = u_rule * total
    acc = 0.0
    chosen = -1
    for r in range(rate.shape[0]):
        a = rate[r] * (
            max(counts[first[r]], 1) if paper and reactant[r] == 0 else counts[reactant[r]]
        )
        if a > 0.0:
            chosen = r
            acc += a
            if u < acc:
                break
    return chosen, t - np.log(1.0 - u_time) / total


@numba.njit(cache=True)
def _parent(
    rng, attempts, needs_room, r, c, state, lists, lsize, scan, n_rows_per_plane, n_per_row,
    edge, offset, wrap, mode,
):  # fmt: skip
    """The parent site of an event of species ``c`` (list ``r``, code 0: an empty site) and, when
    it ``needs_room``, a uniformly random empty in-lattice neighbour for the second product;
    up to ``attempts`` parents are drawn until one has room. Parents are uniform, or drawn
    plane, row, site (paper item 6). Returns (-1, -1) when no parent qualifies."""
    n_planes = scan.shape[1] // (1 + n_rows_per_plane)
    for _ in range(attempts):
        if lsize[r] == 0:  # the species died out (paper: a stale pending event)
            return -1, -1
        if n_planes == 0 or c == 0:
            site = lists[r, int(rng.random() * lsize[r])]
        else:
            while True:
                plane = int(rng.random() * n_planes)
                if scan[r, plane] > 0:
                    break
            while True:
                row = plane * n_rows_per_plane + int(rng.random() * n_rows_per_plane)
                if scan[r, n_planes + row] > 0:
                    break
            while True:
                site = row * n_per_row + int(rng.random() * n_per_row)
                if state[site] == c:
                    break
        if not needs_room:
            return site, -1
        n_free = 0
        for d in range(offset.shape[0]):
            t = site + offset[d]
            if (edge[site] >> d) & 1:
                t = site + wrap[d] if mode == PERIODIC else -1
            if t >= 0 and state[t] == 0:
                n_free += 1
        if n_free == 0:
            continue  # blocked: dropped (one attempt) or another parent (paper item 1)
        pick = int(rng.random() * n_free)
        for d in range(offset.shape[0]):
            t = site + offset[d]
            if (edge[site] >> d) & 1:
                t = site + wrap[d] if mode == PERIODIC else -1
            if t >= 0 and state[t] == 0:
                if pick == 0:
                    return site, t
                pick -= 1
    return -1, -1
