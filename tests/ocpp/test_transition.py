"""Interim profiles for a safe roll-out, checked second by second with the independent reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.ocpp.transition import interim, lowers_only

from .helpers import limit_at, parts, rule_errors, schema_errors

NOW = datetime(2026, 5, 4, 10, 0, 0, 400_000, tzinfo=UTC)  # mid-second, as a clock reads it
HORIZON_S = 9000  # beyond every profile drawn below (start + period + duration, validTo)


def z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def profile(version: str, start_offset: int, periods: list[tuple[int, float, int | None]],
            duration: int | None, valid_to: int | None) -> dict[str, Any]:
    base = NOW.replace(microsecond=0)
    sch: dict[str, Any] = {
        "startSchedule": z(base + timedelta(seconds=start_offset)),
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [
            {"startPeriod": s, "limit": lim, **({"numberPhases": ph} if ph else {})}
            for s, lim, ph in periods
        ],
    }
    if duration is not None:
        sch["duration"] = duration
    prof: dict[str, Any] = {"stackLevel": 2, "chargingProfilePurpose": "TxProfile",
                            "chargingProfileKind": "Absolute"}
    if valid_to is not None:
        prof["validTo"] = z(base + timedelta(seconds=valid_to))
    if version == "1.6":
        prof.update(chargingProfileId=13, transactionId=7, chargingSchedule=sch)
        return {"connectorId": 1, "csChargingProfiles": prof}
    prof.update(id=13, transactionId="t7", chargingSchedule=[{"id": 1, **sch}])
    return {"evseId": 1, "chargingProfile": prof}


@st.composite
def profiles(draw: st.DrawFn, version: str) -> dict[str, Any]:
    starts = sorted(draw(st.sets(st.integers(1, 3000), max_size=6)))
    phases = st.sampled_from([None, 1, 3])
    periods = [(s, draw(st.integers(0, 320)) / 10, draw(phases)) for s in [0, *starts]]
    return profile(
        version,
        draw(st.integers(-2000, 100)),
        periods,
        draw(st.one_of(st.none(), st.integers(1, 5000))),
        draw(st.one_of(st.none(), st.integers(-100, 5000))),
    )


def total(payload: dict[str, Any], version: str, t: datetime) -> float | None:
    """Per-period total the profile allows at t (limit x phases; 3 when unspecified)."""
    lim = limit_at(payload, version, t)
    if lim is None:
        return None
    _, _, schedules = parts(payload, version)
    sch = schedules[0]
    start = datetime.fromisoformat(sch["startSchedule"].replace("Z", "+00:00"))
    phases = 3
    for p in sch["chargingSchedulePeriod"]:
        if start + timedelta(seconds=p["startPeriod"]) <= t:
            phases = p.get("numberPhases") or 3
    return lim * phases


def seconds() -> list[datetime]:
    base = NOW.replace(microsecond=0)
    return [NOW, *(base + timedelta(seconds=k) for k in range(1, HORIZON_S))]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["1.6", "2.0.1"]).flatmap(
    lambda v: st.tuples(st.just(v), profiles(v), profiles(v))))
def test_interim_is_below_both_every_second_and_valid(case: tuple[str, dict, dict]) -> None:
    version, held, new = case
    n_max = max(len(parts(p, version)[2][0]["chargingSchedulePeriod"]) for p in (held, new))
    mid = interim(held, new, version, NOW, max_periods=n_max)
    if mid is None:  # only when the held profile sets nothing (from now on, or in a gap)
        assert any(total(held, version, t) is None for t in seconds())
        return
    assert schema_errors(mid, version) == [] and rule_errors(mid, version, n_max) == []
    assert parts(mid, version)[1]["transactionId"] == parts(new, version)[1]["transactionId"]
    for t in seconds():
        m, h, n = total(mid, version, t), total(held, version, t), total(new, version, t)
        assert (m is None) == (h is None), (t, m, h)  # it lives exactly as long as held
        if m is not None and h is not None:
            assert m <= h + 1e-9, (t, m, h)
            assert n is None or m <= n + 1e-9, (t, m, n)
    assert lowers_only(held, mid, version, NOW)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["1.6", "2.0.1"]).flatmap(
    lambda v: st.tuples(st.just(v), profiles(v), profiles(v))))
def test_lowers_only_matches_a_second_by_second_reading(case: tuple[str, dict, dict]) -> None:
    version, held, new = case
    expected = True
    for t in seconds():
        h, n = total(held, version, t), total(new, version, t)
        if (h is None) != (n is None) or (h is not None and n is not None and n > h + 1e-9):
            expected = False
            break
    assert lowers_only(held, new, version, NOW) == expected
    assert lowers_only(new, new, version, NOW)


def test_hand_case_raise_and_lower_in_one_profile() -> None:
    # held: 16 A for 10 min then 32 A; new: 32 A for 10 min then 8 A. Interim: 16 A then 8 A.
    held = profile("2.0.1", 0, [(0, 16.0, None), (600, 32.0, None)], 3600, None)
    new = profile("2.0.1", 0, [(0, 32.0, None), (600, 8.0, None)], 3600, None)
    mid = interim(held, new, "2.0.1", NOW)
    assert mid is not None
    sch = mid["chargingProfile"]["chargingSchedule"][0]
    assert sch["startSchedule"] == "2026-05-04T10:00:00Z" and sch["duration"] == 3600
    assert sch["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 16.0},
                                             {"startPeriod": 600, "limit": 8.0}]
    assert not lowers_only(held, new, "2.0.1", NOW) and lowers_only(held, mid, "2.0.1", NOW)
    # capped at one period: the lower of the two, all along
    one = interim(held, new, "2.0.1", NOW, max_periods=1)
    assert one is not None
    assert one["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 8.0}]
