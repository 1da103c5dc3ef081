"""etcd's native gRPC KV API (``/etcdserverpb.KV/Put`` and ``/Range``) for the peer suite, without
generated code: the few messages needed are declared here as a ``FileDescriptorProto`` holding only
the fields the benchmark reads or writes (protobuf skips the others on the wire), and their classes
come from ``message_factory.GetMessageClass``."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "etcdserverpb"  # etcd's proto package; KeyValue really lives in mvccpb, the wire is the same
PUT_METHOD = f"/{PACKAGE}.KV/Put"
RANGE_METHOD = f"/{PACKAGE}.KV/Range"
FILE_NAME = "bench_etcd_kv.proto"

_Field = descriptor_pb2.FieldDescriptorProto
BYTES, INT64, UINT64, MESSAGE = _Field.TYPE_BYTES, _Field.TYPE_INT64, _Field.TYPE_UINT64, _Field.TYPE_MESSAGE
OPTIONAL, REPEATED = _Field.LABEL_OPTIONAL, _Field.LABEL_REPEATED

# message name -> (field name, number, type, label, message type name or "")
MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    "ResponseHeader": [("cluster_id", 1, UINT64, OPTIONAL, ""), ("revision", 3, INT64, OPTIONAL, "")],
    "KeyValue": [
        ("key", 1, BYTES, OPTIONAL, ""),
        ("create_revision", 2, INT64, OPTIONAL, ""),
        ("mod_revision", 3, INT64, OPTIONAL, ""),
        ("version", 4, INT64, OPTIONAL, ""),
        ("value", 5, BYTES, OPTIONAL, ""),
    ],
    "PutRequest": [("key", 1, BYTES, OPTIONAL, ""), ("value", 2, BYTES, OPTIONAL, "")],
    "PutResponse": [("header", 1, MESSAGE, OPTIONAL, "ResponseHeader")],
    "RangeRequest": [("key", 1, BYTES, OPTIONAL, "")],
    "RangeResponse": [
        ("header", 1, MESSAGE, OPTIONAL, "ResponseHeader"),
        ("kvs", 2, MESSAGE, REPEATED, "KeyValue"),
        ("count", 4, INT64, OPTIONAL, ""),
    ],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    for message_name, fields in MESSAGES.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind, label, type_name in fields:
            field = message.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{PACKAGE}.{type_name}"
    return proto


def message_classes() -> dict[str, Any]:
    """The message classes by name, built once per process in a private descriptor pool."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in MESSAGES
    }


class KV:
    """A ``grpc.aio`` channel to etcd and its Put and Range calls (one channel: gRPC multiplexes
    every concurrent call over one HTTP/2 connection, as etcd's own Go client does)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self) -> KV:
        import grpc.aio

        classes = message_classes()
        self.put_request, self.range_request = classes["PutRequest"], classes["RangeRequest"]
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        self._put = self.channel.unary_unary(
            PUT_METHOD,
            request_serializer=classes["PutRequest"].SerializeToString,
            response_deserializer=classes["PutResponse"].FromString,
        )
        self._range = self.channel.unary_unary(
            RANGE_METHOD,
            request_serializer=classes["RangeRequest"].SerializeToString,
            response_deserializer=classes["RangeResponse"].FromString,
        )
        await self.channel.channel_ready()
        return self

    async def close(self) -> None:
        await self.channel.close()

    async def put(self, key: bytes, value: bytes) -> int:
        """Store ``value`` under ``key``; the revision etcd gave the write."""
        answer = await self._put(self.put_request(key=key, value=value))
        return int(answer.header.revision)

    async def range(self, key: bytes) -> list[tuple[bytes, bytes]]:
        """The ``(key, value)`` pairs etcd holds for ``key`` (none or one)."""
        answer = await self._range(self.range_request(key=key))
        return [(kv.key, kv.value) for kv in answer.kvs]
