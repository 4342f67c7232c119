from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ComponentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPONENT_KIND_UNSPECIFIED: _ClassVar[ComponentKind]
    COMPONENT_KIND_SOURCE: _ClassVar[ComponentKind]
    COMPONENT_KIND_TRANSFORM: _ClassVar[ComponentKind]
    COMPONENT_KIND_SINK: _ClassVar[ComponentKind]

class NullValue(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NULL_VALUE: _ClassVar[NullValue]
COMPONENT_KIND_UNSPECIFIED: ComponentKind
COMPONENT_KIND_SOURCE: ComponentKind
COMPONENT_KIND_TRANSFORM: ComponentKind
COMPONENT_KIND_SINK: ComponentKind
NULL_VALUE: NullValue

class HandshakeRequest(_message.Message):
    __slots__ = ("protocol_versions", "host_version", "component_id", "kind", "config", "outputs", "describe_only", "capabilities")
    PROTOCOL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    HOST_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIBE_ONLY_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    protocol_versions: _containers.RepeatedScalarFieldContainer[int]
    host_version: str
    component_id: str
    kind: ComponentKind
    config: Value
    outputs: _containers.RepeatedScalarFieldContainer[str]
    describe_only: bool
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, protocol_versions: _Optional[_Iterable[int]] = ..., host_version: _Optional[str] = ..., component_id: _Optional[str] = ..., kind: _Optional[_Union[ComponentKind, str]] = ..., config: _Optional[_Union[Value, _Mapping]] = ..., outputs: _Optional[_Iterable[str]] = ..., describe_only: _Optional[bool] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class HandshakeResponse(_message.Message):
    __slots__ = ("protocol_version", "sdk_name", "sdk_version", "capabilities", "config_schema", "credit", "error")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SDK_NAME_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    sdk_name: str
    sdk_version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    config_schema: str
    credit: int
    error: str
    def __init__(self, protocol_version: _Optional[int] = ..., sdk_name: _Optional[str] = ..., sdk_version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., config_schema: _Optional[str] = ..., credit: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Value(_message.Message):
    __slots__ = ("null", "boolean", "integer", "float", "bytes", "string", "timestamp", "array", "object")
    NULL_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    FLOAT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    STRING_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    null: NullValue
    boolean: bool
    integer: int
    float: float
    bytes: bytes
    string: str
    timestamp: Timestamp
    array: Array
    object: Object
    def __init__(self, null: _Optional[_Union[NullValue, str]] = ..., boolean: _Optional[bool] = ..., integer: _Optional[int] = ..., float: _Optional[float] = ..., bytes: _Optional[bytes] = ..., string: _Optional[str] = ..., timestamp: _Optional[_Union[Timestamp, _Mapping]] = ..., array: _Optional[_Union[Array, _Mapping]] = ..., object: _Optional[_Union[Object, _Mapping]] = ...) -> None: ...

class Timestamp(_message.Message):
    __slots__ = ("seconds", "nanos")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    NANOS_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    nanos: int
    def __init__(self, seconds: _Optional[int] = ..., nanos: _Optional[int] = ...) -> None: ...

class Array(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Object(_message.Message):
    __slots__ = ("fields",)
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.MessageMap[str, Value]
    def __init__(self, fields: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("value", "json", "exact")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    value: Value
    json: bytes
    exact: _containers.RepeatedCompositeFieldContainer[ExactValue]
    def __init__(self, value: _Optional[_Union[Value, _Mapping]] = ..., json: _Optional[bytes] = ..., exact: _Optional[_Iterable[_Union[ExactValue, _Mapping]]] = ...) -> None: ...

class ExactValue(_message.Message):
    __slots__ = ("path", "value")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    path: _containers.RepeatedCompositeFieldContainer[PathSegment]
    value: Value
    def __init__(self, path: _Optional[_Iterable[_Union[PathSegment, _Mapping]]] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class PathSegment(_message.Message):
    __slots__ = ("field", "index")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    field: str
    index: int
    def __init__(self, field: _Optional[str] = ..., index: _Optional[int] = ...) -> None: ...

class SourceBatch(_message.Message):
    __slots__ = ("batch_id", "events")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, batch_id: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class SourceAck(_message.Message):
    __slots__ = ("batch_id", "delivered")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    delivered: bool
    def __init__(self, batch_id: _Optional[int] = ..., delivered: _Optional[bool] = ...) -> None: ...

class TransformBatch(_message.Message):
    __slots__ = ("batch_id", "events")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, batch_id: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class TransformResult(_message.Message):
    __slots__ = ("batch_id", "results")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    results: _containers.RepeatedCompositeFieldContainer[EventResult]
    def __init__(self, batch_id: _Optional[int] = ..., results: _Optional[_Iterable[_Union[EventResult, _Mapping]]] = ...) -> None: ...

class EventResult(_message.Message):
    __slots__ = ("emitted", "error")
    EMITTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    emitted: _containers.RepeatedCompositeFieldContainer[Emitted]
    error: str
    def __init__(self, emitted: _Optional[_Iterable[_Union[Emitted, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class Emitted(_message.Message):
    __slots__ = ("event", "output", "patch")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    event: Event
    output: str
    patch: Patch
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ..., output: _Optional[str] = ..., patch: _Optional[_Union[Patch, _Mapping]] = ...) -> None: ...

class Patch(_message.Message):
    __slots__ = ("set", "removed")
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    set: Event
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, set: _Optional[_Union[Event, _Mapping]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class SinkBatch(_message.Message):
    __slots__ = ("batch_id", "events")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, batch_id: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class SinkResult(_message.Message):
    __slots__ = ("batch_id", "delivered", "retry", "rejected")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    delivered: Delivered
    retry: Retry
    rejected: Rejected
    def __init__(self, batch_id: _Optional[int] = ..., delivered: _Optional[_Union[Delivered, _Mapping]] = ..., retry: _Optional[_Union[Retry, _Mapping]] = ..., rejected: _Optional[_Union[Rejected, _Mapping]] = ...) -> None: ...

class Delivered(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Retry(_message.Message):
    __slots__ = ("after_ms", "reason")
    AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    after_ms: int
    reason: str
    def __init__(self, after_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Rejected(_message.Message):
    __slots__ = ("indices", "reason")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...
