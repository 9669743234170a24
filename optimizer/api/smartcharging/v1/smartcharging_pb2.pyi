import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Wiring(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WIRING_UNSPECIFIED: _ClassVar[Wiring]
    WIRING_WYE: _ClassVar[Wiring]
    WIRING_DELTA: _ClassVar[Wiring]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_FAST: _ClassVar[Mode]
    MODE_LP: _ClassVar[Mode]
    MODE_AUTO: _ClassVar[Mode]

class RateUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RATE_UNIT_UNSPECIFIED: _ClassVar[RateUnit]
    RATE_UNIT_AMPS: _ClassVar[RateUnit]
    RATE_UNIT_WATTS: _ClassVar[RateUnit]

class OcppProfileKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OCPP_PROFILE_KIND_UNSPECIFIED: _ClassVar[OcppProfileKind]
    OCPP_PROFILE_KIND_TX: _ClassVar[OcppProfileKind]
    OCPP_PROFILE_KIND_TX_DEFAULT: _ClassVar[OcppProfileKind]
    OCPP_PROFILE_KIND_FAILSAFE: _ClassVar[OcppProfileKind]
    OCPP_PROFILE_KIND_STATION_MAX: _ClassVar[OcppProfileKind]
WIRING_UNSPECIFIED: Wiring
WIRING_WYE: Wiring
WIRING_DELTA: Wiring
MODE_UNSPECIFIED: Mode
MODE_FAST: Mode
MODE_LP: Mode
MODE_AUTO: Mode
RATE_UNIT_UNSPECIFIED: RateUnit
RATE_UNIT_AMPS: RateUnit
RATE_UNIT_WATTS: RateUnit
OCPP_PROFILE_KIND_UNSPECIFIED: OcppProfileKind
OCPP_PROFILE_KIND_TX: OcppProfileKind
OCPP_PROFILE_KIND_TX_DEFAULT: OcppProfileKind
OCPP_PROFILE_KIND_FAILSAFE: OcppProfileKind
OCPP_PROFILE_KIND_STATION_MAX: OcppProfileKind

class PhasorLimit(_message.Message):
    __slots__ = ("name", "coefficients", "limit_a")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COEFFICIENTS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_A_FIELD_NUMBER: _ClassVar[int]
    name: str
    coefficients: _containers.RepeatedScalarFieldContainer[float]
    limit_a: float
    def __init__(self, name: _Optional[str] = ..., coefficients: _Optional[_Iterable[float]] = ..., limit_a: _Optional[float] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "parent", "phase_limit_a", "power_limit_kw", "phasor_limits", "voltage_v")
    ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PHASE_LIMIT_A_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_KW_FIELD_NUMBER: _ClassVar[int]
    PHASOR_LIMITS_FIELD_NUMBER: _ClassVar[int]
    VOLTAGE_V_FIELD_NUMBER: _ClassVar[int]
    id: str
    parent: str
    phase_limit_a: _containers.RepeatedScalarFieldContainer[float]
    power_limit_kw: float
    phasor_limits: _containers.RepeatedCompositeFieldContainer[PhasorLimit]
    voltage_v: float
    def __init__(self, id: _Optional[str] = ..., parent: _Optional[str] = ..., phase_limit_a: _Optional[_Iterable[float]] = ..., power_limit_kw: _Optional[float] = ..., phasor_limits: _Optional[_Iterable[_Union[PhasorLimit, _Mapping]]] = ..., voltage_v: _Optional[float] = ...) -> None: ...

class Connector(_message.Message):
    __slots__ = ("id", "node", "max_current_a", "min_current_a", "current_step_a", "allowed_currents_a", "phases", "phase_rotation", "wiring", "voltage_v", "phase_angle_deg")
    ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    MAX_CURRENT_A_FIELD_NUMBER: _ClassVar[int]
    MIN_CURRENT_A_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_A_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_CURRENTS_A_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    PHASE_ROTATION_FIELD_NUMBER: _ClassVar[int]
    WIRING_FIELD_NUMBER: _ClassVar[int]
    VOLTAGE_V_FIELD_NUMBER: _ClassVar[int]
    PHASE_ANGLE_DEG_FIELD_NUMBER: _ClassVar[int]
    id: str
    node: str
    max_current_a: float
    min_current_a: float
    current_step_a: float
    allowed_currents_a: _containers.RepeatedScalarFieldContainer[float]
    phases: int
    phase_rotation: str
    wiring: Wiring
    voltage_v: float
    phase_angle_deg: float
    def __init__(self, id: _Optional[str] = ..., node: _Optional[str] = ..., max_current_a: _Optional[float] = ..., min_current_a: _Optional[float] = ..., current_step_a: _Optional[float] = ..., allowed_currents_a: _Optional[_Iterable[float]] = ..., phases: _Optional[int] = ..., phase_rotation: _Optional[str] = ..., wiring: _Optional[_Union[Wiring, str]] = ..., voltage_v: _Optional[float] = ..., phase_angle_deg: _Optional[float] = ...) -> None: ...

class Site(_message.Message):
    __slots__ = ("id", "nodes", "connectors")
    ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CONNECTORS_FIELD_NUMBER: _ClassVar[int]
    id: str
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    connectors: _containers.RepeatedCompositeFieldContainer[Connector]
    def __init__(self, id: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., connectors: _Optional[_Iterable[_Union[Connector, _Mapping]]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("id", "connector", "arrival", "departure", "energy_requested_kwh", "energy_delivered_kwh", "vehicle_max_current_a", "vehicle_min_current_a", "vehicle_max_power_kw", "vehicle_phases", "priority", "measured_current_a")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_FIELD_NUMBER: _ClassVar[int]
    DEPARTURE_FIELD_NUMBER: _ClassVar[int]
    ENERGY_REQUESTED_KWH_FIELD_NUMBER: _ClassVar[int]
    ENERGY_DELIVERED_KWH_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_MAX_CURRENT_A_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_MIN_CURRENT_A_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_MAX_POWER_KW_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_PHASES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MEASURED_CURRENT_A_FIELD_NUMBER: _ClassVar[int]
    id: str
    connector: str
    arrival: _timestamp_pb2.Timestamp
    departure: _timestamp_pb2.Timestamp
    energy_requested_kwh: float
    energy_delivered_kwh: float
    vehicle_max_current_a: float
    vehicle_min_current_a: float
    vehicle_max_power_kw: float
    vehicle_phases: int
    priority: float
    measured_current_a: float
    def __init__(self, id: _Optional[str] = ..., connector: _Optional[str] = ..., arrival: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., departure: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., energy_requested_kwh: _Optional[float] = ..., energy_delivered_kwh: _Optional[float] = ..., vehicle_max_current_a: _Optional[float] = ..., vehicle_min_current_a: _Optional[float] = ..., vehicle_max_power_kw: _Optional[float] = ..., vehicle_phases: _Optional[int] = ..., priority: _Optional[float] = ..., measured_current_a: _Optional[float] = ...) -> None: ...

class CapacityLimit(_message.Message):
    __slots__ = ("node", "start", "end", "limit_kw", "phase_limit_a")
    NODE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_KW_FIELD_NUMBER: _ClassVar[int]
    PHASE_LIMIT_A_FIELD_NUMBER: _ClassVar[int]
    node: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    limit_kw: float
    phase_limit_a: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, node: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit_kw: _Optional[float] = ..., phase_limit_a: _Optional[_Iterable[float]] = ...) -> None: ...

class TimeValue(_message.Message):
    __slots__ = ("start", "end", "value")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    value: float
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ...) -> None: ...

class CurtailmentEvent(_message.Message):
    __slots__ = ("id", "node", "start", "end", "limit_kw", "reduction_kw", "modification")
    ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_KW_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_KW_FIELD_NUMBER: _ClassVar[int]
    MODIFICATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    node: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    limit_kw: float
    reduction_kw: float
    modification: int
    def __init__(self, id: _Optional[str] = ..., node: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit_kw: _Optional[float] = ..., reduction_kw: _Optional[float] = ..., modification: _Optional[int] = ...) -> None: ...

class Signals(_message.Message):
    __slots__ = ("capacity", "prices", "carbon", "events")
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    CARBON_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    capacity: _containers.RepeatedCompositeFieldContainer[CapacityLimit]
    prices: _containers.RepeatedCompositeFieldContainer[TimeValue]
    carbon: _containers.RepeatedCompositeFieldContainer[TimeValue]
    events: _containers.RepeatedCompositeFieldContainer[CurtailmentEvent]
    def __init__(self, capacity: _Optional[_Iterable[_Union[CapacityLimit, _Mapping]]] = ..., prices: _Optional[_Iterable[_Union[TimeValue, _Mapping]]] = ..., carbon: _Optional[_Iterable[_Union[TimeValue, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[CurtailmentEvent, _Mapping]]] = ...) -> None: ...

class Options(_message.Message):
    __slots__ = ("slot_length", "horizon", "mode", "time_limit", "cost_weight", "carbon_weight", "phasor_polygon_sides")
    SLOT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    COST_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CARBON_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PHASOR_POLYGON_SIDES_FIELD_NUMBER: _ClassVar[int]
    slot_length: _duration_pb2.Duration
    horizon: _duration_pb2.Duration
    mode: Mode
    time_limit: _duration_pb2.Duration
    cost_weight: float
    carbon_weight: float
    phasor_polygon_sides: int
    def __init__(self, slot_length: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., horizon: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., mode: _Optional[_Union[Mode, str]] = ..., time_limit: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cost_weight: _Optional[float] = ..., carbon_weight: _Optional[float] = ..., phasor_polygon_sides: _Optional[int] = ...) -> None: ...

class ChangePoint(_message.Message):
    __slots__ = ("start", "current_a")
    START_FIELD_NUMBER: _ClassVar[int]
    CURRENT_A_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    current_a: float
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_a: _Optional[float] = ...) -> None: ...

class ConnectorProfile(_message.Message):
    __slots__ = ("connector", "sessions", "points")
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    connector: str
    sessions: _containers.RepeatedScalarFieldContainer[str]
    points: _containers.RepeatedCompositeFieldContainer[ChangePoint]
    def __init__(self, connector: _Optional[str] = ..., sessions: _Optional[_Iterable[str]] = ..., points: _Optional[_Iterable[_Union[ChangePoint, _Mapping]]] = ...) -> None: ...

class SessionResult(_message.Message):
    __slots__ = ("session", "connector", "requested_kwh", "expected_kwh", "unmet_kwh")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_KWH_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_KWH_FIELD_NUMBER: _ClassVar[int]
    UNMET_KWH_FIELD_NUMBER: _ClassVar[int]
    session: str
    connector: str
    requested_kwh: float
    expected_kwh: float
    unmet_kwh: float
    def __init__(self, session: _Optional[str] = ..., connector: _Optional[str] = ..., requested_kwh: _Optional[float] = ..., expected_kwh: _Optional[float] = ..., unmet_kwh: _Optional[float] = ...) -> None: ...

class Peak(_message.Message):
    __slots__ = ("node", "label", "peak", "limit", "at")
    NODE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PEAK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    node: str
    label: str
    peak: float
    limit: float
    at: _timestamp_pb2.Timestamp
    def __init__(self, node: _Optional[str] = ..., label: _Optional[str] = ..., peak: _Optional[float] = ..., limit: _Optional[float] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Violation(_message.Message):
    __slots__ = ("kind", "subject", "start", "end", "value", "limit", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    subject: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    value: float
    limit: float
    message: str
    def __init__(self, kind: _Optional[str] = ..., subject: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., limit: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("site_id", "start", "end", "profiles", "sessions", "peaks", "energy_cost", "carbon_kg", "solver", "mode", "solve_time", "lp_bound_kwh", "gap", "warnings", "violations", "version", "computed_at", "ocpp_profiles")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    PEAKS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_COST_FIELD_NUMBER: _ClassVar[int]
    CARBON_KG_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SOLVE_TIME_FIELD_NUMBER: _ClassVar[int]
    LP_BOUND_KWH_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_AT_FIELD_NUMBER: _ClassVar[int]
    OCPP_PROFILES_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    profiles: _containers.RepeatedCompositeFieldContainer[ConnectorProfile]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionResult]
    peaks: _containers.RepeatedCompositeFieldContainer[Peak]
    energy_cost: float
    carbon_kg: float
    solver: str
    mode: Mode
    solve_time: _duration_pb2.Duration
    lp_bound_kwh: float
    gap: float
    warnings: _containers.RepeatedScalarFieldContainer[str]
    violations: _containers.RepeatedCompositeFieldContainer[Violation]
    version: int
    computed_at: _timestamp_pb2.Timestamp
    ocpp_profiles: _containers.RepeatedCompositeFieldContainer[OcppProfile]
    def __init__(self, site_id: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., profiles: _Optional[_Iterable[_Union[ConnectorProfile, _Mapping]]] = ..., sessions: _Optional[_Iterable[_Union[SessionResult, _Mapping]]] = ..., peaks: _Optional[_Iterable[_Union[Peak, _Mapping]]] = ..., energy_cost: _Optional[float] = ..., carbon_kg: _Optional[float] = ..., solver: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., solve_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lp_bound_kwh: _Optional[float] = ..., gap: _Optional[float] = ..., warnings: _Optional[_Iterable[str]] = ..., violations: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ..., version: _Optional[int] = ..., computed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ocpp_profiles: _Optional[_Iterable[_Union[OcppProfile, _Mapping]]] = ...) -> None: ...

class ChargerCapabilities(_message.Message):
    __slots__ = ("connector", "ocpp_version", "rate_unit", "max_periods", "limit_resolution", "min_limit", "zero_limit_ok", "supports_phase_switching", "evse_id", "connector_id", "station_id", "profile_id_base", "stack_level_failsafe", "stack_level_tx_default", "stack_level_tx", "stack_level_station_max", "max_offline_duration_s", "no_offline_limit", "invalid_after_offline")
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    OCPP_VERSION_FIELD_NUMBER: _ClassVar[int]
    RATE_UNIT_FIELD_NUMBER: _ClassVar[int]
    MAX_PERIODS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    MIN_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ZERO_LIMIT_OK_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_PHASE_SWITCHING_FIELD_NUMBER: _ClassVar[int]
    EVSE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_BASE_FIELD_NUMBER: _ClassVar[int]
    STACK_LEVEL_FAILSAFE_FIELD_NUMBER: _ClassVar[int]
    STACK_LEVEL_TX_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    STACK_LEVEL_TX_FIELD_NUMBER: _ClassVar[int]
    STACK_LEVEL_STATION_MAX_FIELD_NUMBER: _ClassVar[int]
    MAX_OFFLINE_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    NO_OFFLINE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    INVALID_AFTER_OFFLINE_FIELD_NUMBER: _ClassVar[int]
    connector: str
    ocpp_version: str
    rate_unit: RateUnit
    max_periods: int
    limit_resolution: float
    min_limit: float
    zero_limit_ok: bool
    supports_phase_switching: bool
    evse_id: int
    connector_id: int
    station_id: str
    profile_id_base: int
    stack_level_failsafe: int
    stack_level_tx_default: int
    stack_level_tx: int
    stack_level_station_max: int
    max_offline_duration_s: int
    no_offline_limit: bool
    invalid_after_offline: bool
    def __init__(self, connector: _Optional[str] = ..., ocpp_version: _Optional[str] = ..., rate_unit: _Optional[_Union[RateUnit, str]] = ..., max_periods: _Optional[int] = ..., limit_resolution: _Optional[float] = ..., min_limit: _Optional[float] = ..., zero_limit_ok: _Optional[bool] = ..., supports_phase_switching: _Optional[bool] = ..., evse_id: _Optional[int] = ..., connector_id: _Optional[int] = ..., station_id: _Optional[str] = ..., profile_id_base: _Optional[int] = ..., stack_level_failsafe: _Optional[int] = ..., stack_level_tx_default: _Optional[int] = ..., stack_level_tx: _Optional[int] = ..., stack_level_station_max: _Optional[int] = ..., max_offline_duration_s: _Optional[int] = ..., no_offline_limit: _Optional[bool] = ..., invalid_after_offline: _Optional[bool] = ...) -> None: ...

class NodeFallback(_message.Message):
    __slots__ = ("node", "phase_limit_a", "power_limit_kw")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PHASE_LIMIT_A_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_KW_FIELD_NUMBER: _ClassVar[int]
    node: str
    phase_limit_a: _containers.RepeatedScalarFieldContainer[float]
    power_limit_kw: float
    def __init__(self, node: _Optional[str] = ..., phase_limit_a: _Optional[_Iterable[float]] = ..., power_limit_kw: _Optional[float] = ...) -> None: ...

class OcppOptions(_message.Message):
    __slots__ = ("chargers", "transaction_ids", "station_max", "failsafe", "fallback", "tx_default")
    class TransactionIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    STATION_MAX_FIELD_NUMBER: _ClassVar[int]
    FAILSAFE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    TX_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    chargers: _containers.RepeatedCompositeFieldContainer[ChargerCapabilities]
    transaction_ids: _containers.ScalarMap[str, str]
    station_max: bool
    failsafe: bool
    fallback: _containers.RepeatedCompositeFieldContainer[NodeFallback]
    tx_default: bool
    def __init__(self, chargers: _Optional[_Iterable[_Union[ChargerCapabilities, _Mapping]]] = ..., transaction_ids: _Optional[_Mapping[str, str]] = ..., station_max: _Optional[bool] = ..., failsafe: _Optional[bool] = ..., fallback: _Optional[_Iterable[_Union[NodeFallback, _Mapping]]] = ..., tx_default: _Optional[bool] = ...) -> None: ...

class OcppProfile(_message.Message):
    __slots__ = ("connector", "station", "ocpp_version", "kind", "action", "session", "payload", "warnings")
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    STATION_FIELD_NUMBER: _ClassVar[int]
    OCPP_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    connector: str
    station: str
    ocpp_version: str
    kind: OcppProfileKind
    action: str
    session: str
    payload: _struct_pb2.Struct
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, connector: _Optional[str] = ..., station: _Optional[str] = ..., ocpp_version: _Optional[str] = ..., kind: _Optional[_Union[OcppProfileKind, str]] = ..., action: _Optional[str] = ..., session: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class OptimizeRequest(_message.Message):
    __slots__ = ("site", "sessions", "signals", "now", "options", "ocpp")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OCPP_FIELD_NUMBER: _ClassVar[int]
    site: Site
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    signals: Signals
    now: _timestamp_pb2.Timestamp
    options: Options
    ocpp: OcppOptions
    def __init__(self, site: _Optional[_Union[Site, _Mapping]] = ..., sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., signals: _Optional[_Union[Signals, _Mapping]] = ..., now: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., options: _Optional[_Union[Options, _Mapping]] = ..., ocpp: _Optional[_Union[OcppOptions, _Mapping]] = ...) -> None: ...

class OptimizeResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class PutSiteRequest(_message.Message):
    __slots__ = ("site", "options", "ocpp")
    SITE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OCPP_FIELD_NUMBER: _ClassVar[int]
    site: Site
    options: Options
    ocpp: OcppOptions
    def __init__(self, site: _Optional[_Union[Site, _Mapping]] = ..., options: _Optional[_Union[Options, _Mapping]] = ..., ocpp: _Optional[_Union[OcppOptions, _Mapping]] = ...) -> None: ...

class PutSiteResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class GetSiteRequest(_message.Message):
    __slots__ = ("site_id",)
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    def __init__(self, site_id: _Optional[str] = ...) -> None: ...

class GetSiteResponse(_message.Message):
    __slots__ = ("site", "options", "ocpp")
    SITE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OCPP_FIELD_NUMBER: _ClassVar[int]
    site: Site
    options: Options
    ocpp: OcppOptions
    def __init__(self, site: _Optional[_Union[Site, _Mapping]] = ..., options: _Optional[_Union[Options, _Mapping]] = ..., ocpp: _Optional[_Union[OcppOptions, _Mapping]] = ...) -> None: ...

class ListSitesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSitesResponse(_message.Message):
    __slots__ = ("site_ids",)
    SITE_IDS_FIELD_NUMBER: _ClassVar[int]
    site_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, site_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteSiteRequest(_message.Message):
    __slots__ = ("site_id",)
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    def __init__(self, site_id: _Optional[str] = ...) -> None: ...

class DeleteSiteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartSessionRequest(_message.Message):
    __slots__ = ("site_id", "session", "transaction_id")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    session: Session
    transaction_id: str
    def __init__(self, site_id: _Optional[str] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., transaction_id: _Optional[str] = ...) -> None: ...

class StartSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateSessionRequest(_message.Message):
    __slots__ = ("site_id", "session_id", "energy_delivered_kwh", "measured_current_a", "departure", "energy_requested_kwh")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENERGY_DELIVERED_KWH_FIELD_NUMBER: _ClassVar[int]
    MEASURED_CURRENT_A_FIELD_NUMBER: _ClassVar[int]
    DEPARTURE_FIELD_NUMBER: _ClassVar[int]
    ENERGY_REQUESTED_KWH_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    session_id: str
    energy_delivered_kwh: float
    measured_current_a: float
    departure: _timestamp_pb2.Timestamp
    energy_requested_kwh: float
    def __init__(self, site_id: _Optional[str] = ..., session_id: _Optional[str] = ..., energy_delivered_kwh: _Optional[float] = ..., measured_current_a: _Optional[float] = ..., departure: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., energy_requested_kwh: _Optional[float] = ...) -> None: ...

class UpdateSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopSessionRequest(_message.Message):
    __slots__ = ("site_id", "session_id")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    session_id: str
    def __init__(self, site_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class StopSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("site_id",)
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    def __init__(self, site_id: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("site_id",)
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    def __init__(self, site_id: _Optional[str] = ...) -> None: ...

class GetPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class WatchPlansRequest(_message.Message):
    __slots__ = ("site_ids",)
    SITE_IDS_FIELD_NUMBER: _ClassVar[int]
    site_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, site_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanUpdate(_message.Message):
    __slots__ = ("site_id", "plan", "withdrawn")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    plan: Plan
    withdrawn: str
    def __init__(self, site_id: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., withdrawn: _Optional[str] = ...) -> None: ...

class SubmitEventRequest(_message.Message):
    __slots__ = ("site_id", "event")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    event: CurtailmentEvent
    def __init__(self, site_id: _Optional[str] = ..., event: _Optional[_Union[CurtailmentEvent, _Mapping]] = ...) -> None: ...

class SubmitEventResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    def __init__(self, outcome: _Optional[str] = ...) -> None: ...

class CancelEventRequest(_message.Message):
    __slots__ = ("site_id", "event_id")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    event_id: str
    def __init__(self, site_id: _Optional[str] = ..., event_id: _Optional[str] = ...) -> None: ...

class CancelEventResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("site_id",)
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    def __init__(self, site_id: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[CurtailmentEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[CurtailmentEvent, _Mapping]]] = ...) -> None: ...

class SetCapacityForecastRequest(_message.Message):
    __slots__ = ("site_id", "node", "capacity")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    node: str
    capacity: _containers.RepeatedCompositeFieldContainer[CapacityLimit]
    def __init__(self, site_id: _Optional[str] = ..., node: _Optional[str] = ..., capacity: _Optional[_Iterable[_Union[CapacityLimit, _Mapping]]] = ...) -> None: ...

class SetCapacityForecastResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetPricesRequest(_message.Message):
    __slots__ = ("site_id", "prices", "carbon")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    CARBON_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    prices: _containers.RepeatedCompositeFieldContainer[TimeValue]
    carbon: _containers.RepeatedCompositeFieldContainer[TimeValue]
    def __init__(self, site_id: _Optional[str] = ..., prices: _Optional[_Iterable[_Union[TimeValue, _Mapping]]] = ..., carbon: _Optional[_Iterable[_Union[TimeValue, _Mapping]]] = ...) -> None: ...

class SetPricesResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetComplianceRequest(_message.Message):
    __slots__ = ("site_id", "event_id")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    event_id: str
    def __init__(self, site_id: _Optional[str] = ..., event_id: _Optional[str] = ...) -> None: ...

class ComplianceInterval(_message.Message):
    __slots__ = ("start", "end", "import_kw", "phase_current_a", "limit_kw", "over_kw", "import_without_event_kw")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    IMPORT_KW_FIELD_NUMBER: _ClassVar[int]
    PHASE_CURRENT_A_FIELD_NUMBER: _ClassVar[int]
    LIMIT_KW_FIELD_NUMBER: _ClassVar[int]
    OVER_KW_FIELD_NUMBER: _ClassVar[int]
    IMPORT_WITHOUT_EVENT_KW_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    import_kw: float
    phase_current_a: _containers.RepeatedScalarFieldContainer[float]
    limit_kw: float
    over_kw: float
    import_without_event_kw: float
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., import_kw: _Optional[float] = ..., phase_current_a: _Optional[_Iterable[float]] = ..., limit_kw: _Optional[float] = ..., over_kw: _Optional[float] = ..., import_without_event_kw: _Optional[float] = ...) -> None: ...

class LoweredConnector(_message.Message):
    __slots__ = ("connector", "sessions", "energy_kwh", "energy_without_event_kwh", "max_reduction_a")
    CONNECTOR_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    ENERGY_WITHOUT_EVENT_KWH_FIELD_NUMBER: _ClassVar[int]
    MAX_REDUCTION_A_FIELD_NUMBER: _ClassVar[int]
    connector: str
    sessions: _containers.RepeatedScalarFieldContainer[str]
    energy_kwh: float
    energy_without_event_kwh: float
    max_reduction_a: float
    def __init__(self, connector: _Optional[str] = ..., sessions: _Optional[_Iterable[str]] = ..., energy_kwh: _Optional[float] = ..., energy_without_event_kwh: _Optional[float] = ..., max_reduction_a: _Optional[float] = ...) -> None: ...

class EventCompliance(_message.Message):
    __slots__ = ("site_id", "event", "limit_kw", "plan_start", "plan_end", "covered_from", "covered_until", "fully_covered", "intervals", "kwh_over", "peak_import_kw", "energy_kwh", "energy_without_event_kwh", "lowered", "solver", "counterfactual_solver")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_KW_FIELD_NUMBER: _ClassVar[int]
    PLAN_START_FIELD_NUMBER: _ClassVar[int]
    PLAN_END_FIELD_NUMBER: _ClassVar[int]
    COVERED_FROM_FIELD_NUMBER: _ClassVar[int]
    COVERED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    FULLY_COVERED_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    KWH_OVER_FIELD_NUMBER: _ClassVar[int]
    PEAK_IMPORT_KW_FIELD_NUMBER: _ClassVar[int]
    ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    ENERGY_WITHOUT_EVENT_KWH_FIELD_NUMBER: _ClassVar[int]
    LOWERED_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    COUNTERFACTUAL_SOLVER_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    event: CurtailmentEvent
    limit_kw: float
    plan_start: _timestamp_pb2.Timestamp
    plan_end: _timestamp_pb2.Timestamp
    covered_from: _timestamp_pb2.Timestamp
    covered_until: _timestamp_pb2.Timestamp
    fully_covered: bool
    intervals: _containers.RepeatedCompositeFieldContainer[ComplianceInterval]
    kwh_over: float
    peak_import_kw: float
    energy_kwh: float
    energy_without_event_kwh: float
    lowered: _containers.RepeatedCompositeFieldContainer[LoweredConnector]
    solver: str
    counterfactual_solver: str
    def __init__(self, site_id: _Optional[str] = ..., event: _Optional[_Union[CurtailmentEvent, _Mapping]] = ..., limit_kw: _Optional[float] = ..., plan_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., covered_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., covered_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fully_covered: _Optional[bool] = ..., intervals: _Optional[_Iterable[_Union[ComplianceInterval, _Mapping]]] = ..., kwh_over: _Optional[float] = ..., peak_import_kw: _Optional[float] = ..., energy_kwh: _Optional[float] = ..., energy_without_event_kwh: _Optional[float] = ..., lowered: _Optional[_Iterable[_Union[LoweredConnector, _Mapping]]] = ..., solver: _Optional[str] = ..., counterfactual_solver: _Optional[str] = ...) -> None: ...

class GetComplianceResponse(_message.Message):
    __slots__ = ("compliance",)
    COMPLIANCE_FIELD_NUMBER: _ClassVar[int]
    compliance: EventCompliance
    def __init__(self, compliance: _Optional[_Union[EventCompliance, _Mapping]] = ...) -> None: ...

class GetFlexibilityRequest(_message.Message):
    __slots__ = ("site_id", "node", "start", "end", "levels_kw")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LEVELS_KW_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    node: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    levels_kw: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, site_id: _Optional[str] = ..., node: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., levels_kw: _Optional[_Iterable[float]] = ...) -> None: ...

class FlexibilityLevel(_message.Message):
    __slots__ = ("cap_kw", "peak_kw", "unmet_kwh", "extra_unmet_kwh", "sessions_short", "newly_short", "solver")
    CAP_KW_FIELD_NUMBER: _ClassVar[int]
    PEAK_KW_FIELD_NUMBER: _ClassVar[int]
    UNMET_KWH_FIELD_NUMBER: _ClassVar[int]
    EXTRA_UNMET_KWH_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_SHORT_FIELD_NUMBER: _ClassVar[int]
    NEWLY_SHORT_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    cap_kw: float
    peak_kw: float
    unmet_kwh: float
    extra_unmet_kwh: float
    sessions_short: int
    newly_short: int
    solver: str
    def __init__(self, cap_kw: _Optional[float] = ..., peak_kw: _Optional[float] = ..., unmet_kwh: _Optional[float] = ..., extra_unmet_kwh: _Optional[float] = ..., sessions_short: _Optional[int] = ..., newly_short: _Optional[int] = ..., solver: _Optional[str] = ...) -> None: ...

class GetFlexibilityResponse(_message.Message):
    __slots__ = ("site_id", "node", "start", "end", "plan_start", "plan_end", "covered_from", "covered_until", "baseline_peak_kw", "baseline_unmet_kwh", "baseline_sessions_short", "min_feasible_kw", "levels")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PLAN_START_FIELD_NUMBER: _ClassVar[int]
    PLAN_END_FIELD_NUMBER: _ClassVar[int]
    COVERED_FROM_FIELD_NUMBER: _ClassVar[int]
    COVERED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    BASELINE_PEAK_KW_FIELD_NUMBER: _ClassVar[int]
    BASELINE_UNMET_KWH_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SESSIONS_SHORT_FIELD_NUMBER: _ClassVar[int]
    MIN_FEASIBLE_KW_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    node: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    plan_start: _timestamp_pb2.Timestamp
    plan_end: _timestamp_pb2.Timestamp
    covered_from: _timestamp_pb2.Timestamp
    covered_until: _timestamp_pb2.Timestamp
    baseline_peak_kw: float
    baseline_unmet_kwh: float
    baseline_sessions_short: int
    min_feasible_kw: float
    levels: _containers.RepeatedCompositeFieldContainer[FlexibilityLevel]
    def __init__(self, site_id: _Optional[str] = ..., node: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., covered_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., covered_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., baseline_peak_kw: _Optional[float] = ..., baseline_unmet_kwh: _Optional[float] = ..., baseline_sessions_short: _Optional[int] = ..., min_feasible_kw: _Optional[float] = ..., levels: _Optional[_Iterable[_Union[FlexibilityLevel, _Mapping]]] = ...) -> None: ...
