"""Interim profiles for a safe roll-out, checked line by line with the independent reader at every
instant a profile may change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.ocpp.transition import at_most as profile_at_most
from optimizer.ocpp.transition import interim, lowers_only

from .helpers import limit_at, parts, period_starts, rule_errors, schema_errors

NOW = datetime(2026, 5, 4, 10, 0, 0, 400_000, tzinfo=UTC)  # mid-second, as a clock reads it


def z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


Period = tuple[int, float, int | None] | tuple[int, float, int | None, int | None]


def profile(version: str, start_offset: int, periods: list[Period],
            duration: int | None, valid_to: int | None, unit: str = "A") -> dict[str, Any]:
    base = NOW.replace(microsecond=0)
    rows = []
    for s, lim, ph, *use in periods:
        row: dict[str, Any] = {"startPeriod": s, "limit": lim}
        if ph:
            row["numberPhases"] = ph
        if use and use[0] is not None:
            row["phaseToUse"] = use[0]
        rows.append(row)
    sch: dict[str, Any] = {
        "startSchedule": z(base + timedelta(seconds=start_offset)),
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": rows,
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
def profiles(draw: st.DrawFn, version: str, unit: str) -> dict[str, Any]:
    starts = sorted(draw(st.sets(st.integers(1, 3000), max_size=6)))
    periods: list[Period] = []
    for s in [0, *starts]:
        phases = draw(st.sampled_from([None, 1, 3]))
        use = draw(st.sampled_from([None, 1, 2])) if phases == 1 and version != "1.6" else None
        limit = draw(st.integers(0, 320)) / 10 * (230 if unit == "W" else 1)
        periods.append((s, round(limit, 1), phases, use))
    return profile(
        version,
        draw(st.integers(-2000, 100)),
        periods,
        draw(st.one_of(st.none(), st.integers(1, 5000))),
        draw(st.one_of(st.none(), st.integers(-100, 5000))),
        unit,
    )


def pairs() -> st.SearchStrategy[tuple[str, dict[str, Any], dict[str, Any]]]:
    return st.tuples(st.sampled_from(["1.6", "2.0.1"]), st.sampled_from(["A", "W"])).flatmap(
        lambda vu: st.tuples(st.just(vu[0]), profiles(*vu), profiles(*vu)))


def lines(payload: dict[str, Any], version: str, t: datetime, car: int) -> list[float] | None:
    """Amperes each of L1..L3 may carry at t under the profile (None: it sets nothing), for a
    car whose single phase (when not set by phaseToUse) is line ``car``; W at 230 V."""
    lim = limit_at(payload, version, t)
    if lim is None:
        return None
    _, _, schedules = parts(payload, version)
    sch = schedules[0]
    start = datetime.fromisoformat(sch["startSchedule"].replace("Z", "+00:00"))
    period: dict[str, Any] = {}
    for p in sch["chargingSchedulePeriod"]:
        if start + timedelta(seconds=p["startPeriod"]) <= t:
            period = p
    phases = period.get("numberPhases") or 3
    amps = lim if sch["chargingRateUnit"] == "A" else lim / 230 / phases
    if phases == 3:
        return [amps] * 3
    out = [0.0] * 3
    out[period.get("phaseToUse", car) - 1] = amps
    return out


def at_most(a: list[float] | None, b: list[float] | None) -> bool:
    return a is not None and b is not None and all(x <= y + 1e-9 for x, y in zip(a, b, strict=True))


def instants(*payloads: dict[str, Any], version: str = "") -> list[datetime]:
    """NOW and every instant from NOW on where one of the profiles may change (period starts,
    schedule end, validTo): each is constant in between, so these cover every second."""
    out = {NOW}
    for p in payloads:
        _, prof, _ = parts(p, version)
        edges = period_starts(p, version)
        if "validTo" in prof:
            edges.append(datetime.fromisoformat(prof["validTo"].replace("Z", "+00:00")))
        out |= {t for t in edges if t >= NOW}
    return sorted(out)


@settings(max_examples=100, deadline=None)
@given(pairs())
def test_interim_is_below_both_every_second_and_valid(case: tuple[str, dict, dict]) -> None:
    version, held, new = case
    mid = interim(held, new, version, NOW)
    if mid is None:  # only when the held profile sets nothing (from now on, or in a gap)
        assert any(limit_at(held, version, t) is None for t in instants(held, version=version))
        return
    n_max = max(len(parts(p, version)[2][0]["chargingSchedulePeriod"]) for p in (held, new))
    assert schema_errors(mid, version) == [] and rule_errors(mid, version, n_max) == []
    assert parts(mid, version)[1]["transactionId"] == parts(new, version)[1]["transactionId"]
    for t in instants(mid, held, new, version=version):
        for car in (1, 2, 3):
            m, h, n = (lines(p, version, t, car) for p in (mid, held, new))
            assert (m is None) == (h is None), (t, m, h)  # it lives exactly as long as held
            if m is not None:
                assert at_most(m, h), (t, car, m, h)
                assert n is None or at_most(m, n), (t, car, m, n)
    assert lowers_only(held, mid, version, NOW)


@settings(max_examples=100, deadline=None)
@given(pairs())
def test_lowers_only_matches_a_line_by_line_reading(case: tuple[str, dict, dict]) -> None:
    version, held, new = case
    expected = True
    for t in instants(held, new, version=version):
        for car in (1, 2, 3):
            h, n = lines(held, version, t, car), lines(new, version, t, car)
            if (h is None) != (n is None) or (n is not None and not at_most(n, h)):
                expected = False
    assert lowers_only(held, new, version, NOW) == expected
    assert lowers_only(new, new, version, NOW)


@settings(max_examples=100, deadline=None)
@given(pairs())
def test_profile_at_most_matches_a_line_by_line_reading(case: tuple[str, dict, dict]) -> None:
    # what an offline station holds (a) within its new profile (b) wherever a sets a limit
    version, a, b = case
    expected = True
    for t in instants(a, b, version=version):
        for car in (1, 2, 3):
            la, lb = lines(a, version, t, car), lines(b, version, t, car)
            if la is not None and not at_most(la, lb):
                expected = False
    assert profile_at_most(a, b, version, NOW) == expected
    assert profile_at_most(a, a, version, NOW)
    mid = interim(a, b, version, NOW)
    if mid is not None:
        assert profile_at_most(mid, a, version, NOW)


def test_profile_at_most_hand_cases() -> None:
    held = profile("2.0.1", 0, [(0, 6.0, None), (600, 0.0, None)], 3600, None)
    assert not profile_at_most(held, profile("2.0.1", 0, [(0, 0.0, None), (300, 9.0, None)],
                                             3600, None), "2.0.1", NOW)
    assert profile_at_most(held, profile("2.0.1", 0, [(0, 6.0, None)], 3600, None), "2.0.1",
                           NOW)
    # held outlasts new: after new ends it still allows 6 A where the plan gives nothing
    held = profile("2.0.1", 0, [(0, 6.0, None)], 7200, None)
    assert not profile_at_most(held, profile("2.0.1", 0, [(0, 6.0, None)], 3600, None),
                               "2.0.1", NOW)
    # nothing held from now on (expired): nothing to lower
    gone = profile("2.0.1", -7200, [(0, 32.0, None)], 3600, None)
    assert profile_at_most(gone, profile("2.0.1", 0, [(0, 0.0, None)], 3600, None), "2.0.1", NOW)
    # other units are not compared
    assert not profile_at_most(profile("2.0.1", 0, [(0, 0.0, None)], 3600, None),
                               profile("2.0.1", 0, [(0, 0.0, None)], 3600, None, "W"),
                               "2.0.1", NOW)


def test_fewer_phases_at_a_higher_current_is_a_raise() -> None:
    # 10 A on 3 phases -> 16 A on 1 phase: the car's line goes from 10 to 16 A.
    held = profile("2.0.1", 0, [(0, 10.0, 3)], 3600, None)
    new = profile("2.0.1", 0, [(0, 16.0, 1)], 3600, None)
    assert not lowers_only(held, new, "2.0.1", NOW)
    mid = interim(held, new, "2.0.1", NOW)
    assert mid is not None
    assert mid["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 10.0, "numberPhases": 1}]
    # the same in W at 230 V: 6,900 W on 3 phases (10 A each) -> 3,680 W on 1 phase (16 A)
    held = profile("2.0.1", 0, [(0, 6900.0, 3)], 3600, None, "W")
    new = profile("2.0.1", 0, [(0, 3680.0, 1)], 3600, None, "W")
    assert not lowers_only(held, new, "2.0.1", NOW)
    mid = interim(held, new, "2.0.1", NOW)
    assert mid is not None
    assert mid["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 2300.0, "numberPhases": 1}]


def test_interim_keeps_to_the_longer_profiles_period_count() -> None:
    held = profile("2.0.1", 0, [(60 * k, 10.0 + (k % 2) * 6, None) for k in range(24)], 3600,
                   None)
    new = profile("2.0.1", 0, [(0, 16.0, None)] + [(60 * k + 30, 16.0 - (k % 2) * 6, None)
                                                   for k in range(23)], 3600, None)
    mid = interim(held, new, "2.0.1", NOW)
    assert mid is not None
    assert rule_errors(mid, "2.0.1", 24) == [] and lowers_only(held, mid, "2.0.1", NOW)
    assert lowers_only(new, mid, "2.0.1", NOW)


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
