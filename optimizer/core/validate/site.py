"""Site checks: nodes, the tree they form (one root, no cycles, bounded depth) and connectors.

They return a ``_SiteIndex`` (nodes and connectors by id, parent links, acyclic or not) that the
session, signal and size checks look references up in, so a bad site is reported once, here.
"""

from __future__ import annotations

from ..model import ROTATIONS, Connector, Node, PhasorLimit, Site, Wiring
from .base import (
    MAX_CURRENT_A,
    MAX_VOLTAGE_V,
    MIN_CURRENT_STEP_A,
    MIN_VOLTAGE_V,
    _Check,
    _expected,
    _g,
    _show,
    _SiteIndex,
)


class _SiteCheck(_Check):
    """The ``site`` section: ids, limits and phasor limits of nodes, the tree, connectors."""

    def site(self, site: object, path: str) -> _SiteIndex:
        if not isinstance(site, Site):
            self.add(path, _expected("a Site", site))
            return _SiteIndex(None, None, {}, False)
        self.text(f"{path}.id", site.id)
        found = self.nodes(site.nodes, f"{path}.nodes")
        nodes: dict[str, Node] | None = None
        parent_of: dict[str, str | None] = {}
        acyclic = False
        if found is not None:
            nodes, index = found
            parent_of, acyclic = self.tree(nodes, index, f"{path}.nodes")
        conns = self.connectors(site.connectors, f"{path}.connectors", nodes)
        return _SiteIndex(nodes, conns, parent_of, acyclic)

    def nodes(self, value: object, path: str) -> tuple[dict[str, Node], dict[str, int]] | None:
        """Nodes by id (first of duplicates) and their positions."""
        items = self.seq(path, value)
        if items is None:
            return None
        if not items:
            self.add(path, "at least one node (the grid connection) is required")
        first: dict[str, int] = {}
        found: dict[str, Node] = {}
        for i, n in enumerate(items):
            p = f"{path}[{i}]"
            if not isinstance(n, Node):
                self.add(p, _expected("a Node", n))
                continue
            nid = self.text(f"{p}.id", n.id)
            if nid is not None:
                if nid in first:
                    self.add(f"{p}.id", f"duplicate id {nid!r} (also {path}[{first[nid]}])")
                else:
                    first[nid] = i
                    found[nid] = n
        for i, n in enumerate(items):
            if isinstance(n, Node):
                self.node(n, f"{path}[{i}]", first)
        return found, first

    def node(self, n: Node, p: str, ids: dict[str, int]) -> None:
        if n.parent is not None:
            parent = self.text(f"{p}.parent", n.parent)
            if parent is not None and parent not in ids:
                self.add(f"{p}.parent", f"unknown node {parent!r}")
        if n.phase_limit_a is not None:
            self.triple(f"{p}.phase_limit_a", n.phase_limit_a, "L1, L2, L3")
        self.number(f"{p}.power_limit_kw", n.power_limit_kw, lo=0.0, optional=True)
        self.number(f"{p}.voltage_v", n.voltage_v, lo=MIN_VOLTAGE_V, hi=MAX_VOLTAGE_V)
        pls = self.seq(f"{p}.phasor_limits", n.phasor_limits)
        if pls is None:
            return
        if len(pls) > self.limits.max_phasor_limits:
            self.add(
                f"{p}.phasor_limits",
                f"{len(pls)} phasor limits; at most {self.limits.max_phasor_limits} per node",
            )
            return
        names: dict[str, int] = {}
        for k, pl in enumerate(pls):
            q = f"{p}.phasor_limits[{k}]"
            if not isinstance(pl, PhasorLimit):
                self.add(q, _expected("a PhasorLimit", pl))
                continue
            name = self.text(f"{q}.name", pl.name)
            if name is not None:
                if name in names:
                    self.add(
                        f"{q}.name", f"duplicate name {name!r} (also phasor_limits[{names[name]}])"
                    )
                else:
                    names[name] = k
            coef = self.seq(f"{q}.coefficients", pl.coefficients)
            if coef is not None:
                if len(coef) != 3:
                    self.add(
                        f"{q}.coefficients", f"must have 3 values (L1, L2, L3), got {len(coef)}"
                    )
                else:
                    cs = [self.number(f"{q}.coefficients[{j}]", c) for j, c in enumerate(coef)]
                    if all(c == 0.0 for c in cs):
                        self.add(f"{q}.coefficients", "all zero: the limit would constrain nothing")
            self.number(f"{q}.limit_a", pl.limit_a, lo=0.0)

    def tree(
        self, nodes: dict[str, Node], index: dict[str, int], path: str
    ) -> tuple[dict[str, str | None], bool]:
        """Exactly one root, no cycles, bounded depth: compile walks every connector to the root.

        Returns each node's parent (nodes with a bad parent left out) and whether it is acyclic.
        """
        parent_of: dict[str, str | None] = {}
        roots: list[str] = []
        for nid, n in nodes.items():
            if n.parent is None:
                roots.append(nid)
                parent_of[nid] = None
            elif isinstance(n.parent, str) and n.parent in nodes:
                parent_of[nid] = n.parent
        roots.sort(key=index.__getitem__)
        for extra in roots[1:]:
            first = f"{roots[0]!r} ({path}[{index[roots[0]]}])"
            self.add(
                f"{path}[{index[extra]}].parent",
                f"a second root: {extra!r} has no parent but {first} is already the root; "
                "a site has exactly one grid connection",
            )
        # Follow parent links from every node; a link back onto the current walk is a cycle.
        state: dict[str, int] = {}  # 1: on the current walk, 2: done
        acyclic = True
        for start in sorted(parent_of, key=index.__getitem__):
            walk: list[str] = []
            cur: str | None = start
            while cur is not None and cur in parent_of and cur not in state:
                state[cur] = 1
                walk.append(cur)
                cur = parent_of[cur]
            if cur is not None and state.get(cur) == 1:
                acyclic = False
                cyc = walk[walk.index(cur) :]
                k = min(range(len(cyc)), key=lambda j: index[cyc[j]])
                cyc = cyc[k:] + cyc[:k]
                self.add(
                    f"{path}[{index[cyc[0]]}].parent",
                    "cycle: " + " -> ".join([*cyc, cyc[0]]) + " (each arrow points to the parent)",
                )
            for x in walk:
                state[x] = 2
        if nodes and not roots:
            self.add(path, "no root: exactly one node (the grid connection) must have no parent")
        if acyclic:
            depth: dict[str, int] = {}
            deepest, worst = 0, ""
            for nid in parent_of:
                chain: list[str] = []
                cur = nid
                while cur is not None and cur in parent_of and cur not in depth:
                    chain.append(cur)
                    cur = parent_of[cur]
                d = depth[cur] if cur is not None and cur in depth else -1
                for x in reversed(chain):
                    d += 1
                    depth[x] = d
                if depth[nid] > deepest:
                    deepest, worst = depth[nid], nid
            if deepest > self.limits.max_tree_depth:
                self.add(
                    path,
                    f"the tree is {deepest} levels deep (node {worst!r}); at most "
                    f"{self.limits.max_tree_depth}",
                )
        return parent_of, acyclic

    def connectors(
        self, value: object, path: str, nodes: dict[str, Node] | None
    ) -> dict[str, Connector] | None:
        items = self.seq(path, value)
        if items is None:
            return None
        seen: dict[str, int] = {}
        found: dict[str, Connector] = {}
        for i, c in enumerate(items):
            p = f"{path}[{i}]"
            if not isinstance(c, Connector):
                self.add(p, _expected("a Connector", c))
                continue
            cid = self.text(f"{p}.id", c.id)
            if cid is not None:
                if cid in seen:
                    self.add(f"{p}.id", f"duplicate id {cid!r} (also {path}[{seen[cid]}])")
                elif nodes is not None and cid in nodes:
                    self.add(
                        f"{p}.id",
                        f"{cid!r} is also a node id; nodes and connectors share one namespace "
                        "in plans and reports",
                    )
                    seen[cid] = i
                    found[cid] = c
                else:
                    seen[cid] = i
                    found[cid] = c
            self.connector(c, p, nodes)
        return found

    def connector(self, c: Connector, p: str, nodes: dict[str, Node] | None) -> None:
        node = self.text(f"{p}.node", c.node)
        if node is not None and nodes is not None and node not in nodes:
            self.add(f"{p}.node", f"unknown node {node!r}")
        hi = self.number(
            f"{p}.max_current_a", c.max_current_a, lo=0.0, lo_open=True, hi=MAX_CURRENT_A
        )
        top = MAX_CURRENT_A if hi is None else hi
        lo = self.number(f"{p}.min_current_a", c.min_current_a, lo=0.0, hi=MAX_CURRENT_A)
        if lo is not None and hi is not None and lo > hi:
            self.add(f"{p}.min_current_a", f"must be <= max_current_a ({_g(hi)}), got {_g(lo)}")
        step = self.number(f"{p}.current_step_a", c.current_step_a, lo=0.0, hi=MAX_CURRENT_A)
        if step is not None and 0.0 < step < MIN_CURRENT_STEP_A:
            self.add(
                f"{p}.current_step_a",
                f"must be 0 (any current) or >= {_g(MIN_CURRENT_STEP_A)}, got {_g(step)}",
            )
        allowed = self.seq(f"{p}.allowed_currents_a", c.allowed_currents_a)
        if allowed is not None:
            if len(allowed) > self.limits.max_allowed_currents:
                self.add(
                    f"{p}.allowed_currents_a",
                    f"{len(allowed)} values; at most {self.limits.max_allowed_currents}",
                )
            else:
                where: dict[float, int] = {}
                for k, a in enumerate(allowed):
                    q = f"{p}.allowed_currents_a[{k}]"
                    v = self.number(q, a, lo=0.0, hi=MAX_CURRENT_A)
                    if v is None:
                        continue
                    if v > top:
                        self.add(q, f"must be <= max_current_a ({_g(top)}), got {_g(v)}")
                    elif v in where:
                        self.add(q, f"duplicate of allowed_currents_a[{where[v]}] ({_g(v)})")
                    else:
                        where[v] = k
        phases = self.phases(f"{p}.phases", c.phases)
        rot = c.phase_rotation
        if not isinstance(rot, str) or rot not in ROTATIONS:
            self.add(
                f"{p}.phase_rotation", f"must be one of {', '.join(ROTATIONS)}, got {_show(rot)}"
            )
        if not isinstance(c.wiring, Wiring):
            # Wiring is a str enum: a plain "delta" compares equal but compile tests identity.
            self.add(f"{p}.wiring", f"must be Wiring.WYE or Wiring.DELTA, got {_show(c.wiring)}")
        elif c.wiring is Wiring.DELTA and phases is not None and phases != 1:
            self.add(
                f"{p}.phases", f"DELTA wiring is one line-to-line branch: must be 1, got {phases}"
            )
        self.number(f"{p}.voltage_v", c.voltage_v, lo=MIN_VOLTAGE_V, hi=MAX_VOLTAGE_V)
        angle = self.number(
            f"{p}.phase_angle_deg", c.phase_angle_deg, lo=-360.0, hi=360.0, optional=True
        )
        if angle is not None and c.wiring is Wiring.WYE:
            self.add(f"{p}.phase_angle_deg", "only used with DELTA wiring; leave it unset for WYE")
