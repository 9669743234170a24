"""Fast path: a greedy, always-feasible allocator and a repair pass, as numba kernels.

**Allocation (``allocate``).** Slots are visited in one global order, cheapest first (cost
rounded to 1e-6, ties by time, so equal prices give early, contiguous charging); every session
thus fills its own slots cheapest first. In a slot, the sessions present that still want energy
take turns in *rounds*, most urgent first (weight times the share of its remaining hours at full
current that a session still needs: a car that lost out in one slot goes first in the next, a
car leaving soon before one with time to spare, priority counts). In its turn a session raises
its current by ``quantum_a`` times its weight relative to the smallest weight (at least to its
next allowed value, so from 0 straight to its minimum current), capped by its maximum current,
by the energy it still wants (never more than requested) and by the exact headroom of every
limit row that contains it in that slot; the result is floored to the allowed currents (the
``lo + k*step`` grid or the discrete set). A session whose step was cut by a row,
or that cannot fit its next allowed value, is done with the slot. So a contested slot is shared
in proportion to the weights instead of first come, first served: nobody is starved at 0 or 6 A
while others draw full current. A session whose rows could give every competitor of the slot all
it wants there (tracked per row as room minus what the others may still add) takes its share in
one step: the rounds could not change it, so only congested slots pay for the fine steps.

**Headroom.** A *linear* row (all coefficients in one direction) keeps its room ``L - sum |c| x``
per slot; a member's headroom is ``room / |c|``. A *phasor* row keeps ``z = sum c x`` and the
largest step ``d`` with ``|z + c d| <= L`` is the upper root of ``|c|^2 d^2 + 2 b d + |z|^2 -
L^2 = 0`` with ``b = Re(conj(z) c)``. The feasible steps form an interval containing 0, so
flooring a feasible target to the grid stays feasible; currents only increase, so the plan is
feasible after every step. The row state is stored slot-major (``[T, K]``) and a slot's work
touches only its own row of it, which keeps the working set in cache. Cost: O(N*T + T*K) plus
O(rows per session) per increment.

**Improvement (``_shift``).** After the rounds, a session still short of its need looks at its
slots, cheapest first, for three kinds of move, each kept only if it helps and undone exactly
otherwise; a work budget (about two visits per plan cell, and at least ``SHIFT_WORK_MIN``) bounds
them. *Move a donor:* where a row blocks it, the other members of that row that draw in the slot
drop there by what the short session lacks (or to 0, as a new slot may need its whole minimum
current) and refill their lost energy in their other slots, then the short session refills; kept if
it gained and the donor kept all its energy. *Trade:* a session that leaves at least its quantum of
a row's headroom unused because its next allowed current (the next level of a discrete set, or its
minimum from 0) does not fit may have one donor drop by just the shortfall; kept if it gains more
kWh than the donor loses, weighted by priority too (so a continuous car at 9 A gives up 0.2 A so
that a discrete car can hold 16 A instead of 8 A); and where the row binds, one donor that delivers
less energy per unit of the row's capacity at the margin (kWh per A of ``|c|`` on a linear row, of
``d|z|/dx`` on a phasor row) drops by what lets the short session reach what it still wants there,
kept on the same terms (the rounds give equal current, not equal row capacity: a delta car may take
twice a phasor row per A, and its neighbour would get half). *Gather:* a session whose remaining
energy is too little for its minimum current in a free slot lowers its own current in its other
slots, dearest first, by what it lacks, and takes the slot; kept if it ends with more energy (a
remainder below one slot's minimum is delivered, not lost). Every accepted move raises the plan's
energy, so none undoes another. A lowered member can lengthen a phasor row its coefficient points
against: such a step is refused.

**Repair (``polish``).** Takes any current matrix (typically a continuous LP solution, which may be
off-grid and may slightly exceed phasor limits because the LP uses a polygon) and returns a plan
that meets every hard constraint: clip to ``[0, ub]``, floor to the allowed currents, cut energy
above the request (dearest slots first), then, slot by slot, scale down the members of every
over-limit row whose coefficient points along the row's phasor (``Re(conj(z) c) > 0``) by the
largest factor that makes the row hold, floored to the grid; lowering members can push another
phasor row over, so the slot is swept again, and after a few sweeps an over-limit row's members
are zeroed (zero is always feasible). Finally the plan is topped up with the same rounds.

**Not modelled here.** Minimum on/off times and a preference for fewer changes beyond
"cheapest, then earliest": when limits force cars to take turns at their
minimum current, they may alternate slot by slot.

All kernels are ``nogil`` and keep no global state, so a thread pool may run them in parallel.

**Layout.** ``arrays`` (the ``Sessions`` and ``Rows`` tuples, tolerances), ``currents`` (allowed
currents) and ``headroom`` (row state) are the ``inline="always"`` helpers; ``fill`` holds the
rounds, ``shift`` the improvement and ``repair`` the repair; ``driver`` builds the arrays and runs
the passes. The kernels cache their machine code (``cache=True``), but numba checks only the
caller's own file for changes: after editing ``arrays``, ``currents``, ``headroom`` or ``fill``
(or ``compile.GRID_EPS``), delete ``optimizer/core/kernels/__pycache__`` or the modules that call
them may run stale inlined code (numba issue #1833).
"""

from __future__ import annotations

from .arrays import Rows, Sessions
from .driver import allocate, polish, slot_order, urgency_order, warmup

__all__ = ["Rows", "Sessions", "allocate", "polish", "slot_order", "urgency_order", "warmup"]
