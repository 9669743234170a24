"""Input validation: reject what the optimizer cannot plan safely, naming every bad field.

``compile_problem`` trusts its input (known references, an acyclic tree, finite numbers, aware
times), so everything a client sends passes through ``validate`` first. Each rule guards one such
assumption or a physical sanity bound; the reason text says which. Paths use the protobuf field
names (``sessions[3].departure``, ``site.nodes[2].phase_limit_a[1]``) so a gRPC client sees the
field it sent; options use the domain names (``options.slot_minutes``), which
``optimizer.api.convert`` maps to the wire names.

Validation never raises anything but ``ValidationError``, whatever the values and their types
(NaN, infinities, a ``str`` where a float belongs, ``None`` where a value is required).

Layout: ``base`` holds the violation types, ``Limits``, the bounds and the ``_Check`` primitives;
``site``, ``sessions``, ``signals`` and ``options`` each check one section of a request as a
``_Check`` subclass, and ``_RequestCheck`` here composes them into the one checker ``validate``
runs.
"""

from __future__ import annotations

from ..model import Problem, Site
from .base import (
    MAX_CURRENT_A,
    MAX_ENERGY_KWH,
    MAX_HORIZON_HOURS,
    MAX_MAGNITUDE,
    MAX_MODIFICATION,
    MAX_PRIORITY,
    MAX_TIME_LIMIT_S,
    MAX_VOLTAGE_V,
    MIN_CURRENT_STEP_A,
    MIN_VOLTAGE_V,
    POLYGON_SIDES,
    SLOT_MINUTES,
    FieldViolation,
    Limits,
    ValidationError,
    _expected,
)
from .options import _OptionCheck
from .sessions import _SessionCheck
from .signals import _SignalCheck
from .site import _SiteCheck

__all__ = [
    "MAX_CURRENT_A",
    "MAX_ENERGY_KWH",
    "MAX_HORIZON_HOURS",
    "MAX_MAGNITUDE",
    "MAX_MODIFICATION",
    "MAX_PRIORITY",
    "MAX_TIME_LIMIT_S",
    "MAX_VOLTAGE_V",
    "MIN_CURRENT_STEP_A",
    "MIN_VOLTAGE_V",
    "POLYGON_SIDES",
    "SLOT_MINUTES",
    "FieldViolation",
    "Limits",
    "ValidationError",
    "validate",
    "validate_site",
]


#: The default bounds (frozen, so one shared instance is safe).
_LIMITS = Limits()


class _RequestCheck(_SiteCheck, _SessionCheck, _SignalCheck, _OptionCheck):
    """All section checks on one shared violation list; ``validate`` runs them in request order."""


def validate(problem: Problem, limits: Limits = _LIMITS) -> None:
    """Check a whole request; raise ``ValidationError`` listing every violation found."""
    ck = _RequestCheck(limits)
    ck.sizes(problem)
    if ck.out:
        raise ValidationError(ck.out)
    if not isinstance(problem, Problem):
        raise ValidationError([FieldViolation("problem", _expected("a Problem", problem))])
    site = ck.site(problem.site, "site")
    sessions = ck.sessions(problem.sessions, site)
    ck.signals(problem.signals, site)
    now = ck.aware("now", problem.now)
    ck.options(problem, now, sessions, site)
    if ck.out:
        raise ValidationError(ck.out)


def validate_site(site: Site, limits: Limits = _LIMITS) -> None:
    """Check a site on its own (a registry stores sites without sessions); paths start ``site.``."""
    ck = _RequestCheck(limits)
    ck.site_sizes(site)
    if not ck.out:
        ck.site(site, "site")
    if ck.out:
        raise ValidationError(ck.out)
