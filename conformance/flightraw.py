"""Flight SQL spoken by hand (grpcio and protobuf encoded here), for the attack suite: the
messages real clients never send, such as Arrow IPC whose header lies, or another
principal's statement handle."""
import struct

import grpc
import pyarrow as pa

SQL = "type.googleapis.com/arrow.flight.protocol.sql."
SERVICE = "/arrow.flight.protocol.FlightService/"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited field (bytes, strings, messages)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def enum_field(number, value):
    return varint(number << 3) + varint(value)


def any_of(name, body):
    return field(1, SQL + name) + field(2, body)


def parse(message):
    """A protobuf message's fields: {number: [value, …]} (varints as ints, the rest bytes)."""
    fields, i = {}, 0
    while i < len(message):
        key, i = _varint(message, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(message, i)
        elif wire == 2:
            length, i = _varint(message, i)
            value, i = message[i:i + length], i + length
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _varint(data, i):
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


class FlightRaw:
    def __init__(self, address, token):
        self.channel = grpc.insecure_channel(address)
        self.metadata = [("authorization", f"Bearer {token}")]

    def close(self):
        self.channel.close()

    def action(self, kind, body):
        call = self.channel.unary_stream(SERVICE + "DoAction", request_serializer=lambda x: x,
                                         response_deserializer=lambda x: x)
        return [parse(r).get(1, [b""])[0] for r in call(field(1, kind) + field(2, body), metadata=self.metadata,
                                                         timeout=60)]

    def prepare(self, sql):
        """CreatePreparedStatement: the handle."""
        [result] = self.action("CreatePreparedStatement",
                               any_of("ActionCreatePreparedStatementRequest", field(1, sql)))
        return parse(parse(result)[2][0])[1][0]

    def cancel_flight_info(self, handle):
        """CancelFlightInfo for a FlightInfo whose ticket names `handle`: the CancelStatus."""
        ticket = any_of("CommandPreparedStatementQuery", field(1, handle))
        info = field(3, field(1, field(1, ticket)))
        [result] = self.action("CancelFlightInfo", field(1, info))
        return parse(result).get(1, [0])[0]

    def do_get_prepared(self, handle):
        """DoGet of a prepared statement: the FlightData messages."""
        call = self.channel.unary_stream(SERVICE + "DoGet", request_serializer=lambda x: x,
                                         response_deserializer=lambda x: x)
        ticket = field(1, any_of("CommandPreparedStatementQuery", field(1, handle)))
        return list(call(ticket, metadata=self.metadata, timeout=60))

    def do_put_prepared(self, handle, messages):
        """DoPut of raw (header, body) IPC messages as a prepared statement's parameters."""
        call = self.channel.stream_stream(SERVICE + "DoPut", request_serializer=lambda x: x,
                                          response_deserializer=lambda x: x)
        descriptor = enum_field(1, 2) + field(2, any_of("CommandPreparedStatementQuery", field(1, handle)))
        frames = []
        for i, (header, body) in enumerate(messages):
            frame = (field(1, descriptor) if i == 0 else b"") + field(2, header)
            if body:
                frame += field(1000, body)
            frames.append(frame)
        return list(call(iter(frames), metadata=self.metadata, timeout=60))


def ipc_messages(batch, compression=None):
    """A batch as Arrow IPC stream messages: (flatbuffer header, body) pairs, schema first."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
        writer.write_batch(batch)
    reader = pa.ipc.MessageReader.open_stream(sink.getvalue())
    out = []
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            return out
        if message is None:
            return out
        out.append((message.metadata.to_pybytes(), message.body.to_pybytes() if message.body else b""))


def lz4_bomb():
    """One row of parameters, LZ4-compressed, whose buffers claim 2^44 uncompressed bytes."""
    messages = ipc_messages(pa.record_batch({"p": pa.array([7], pa.int64())}), compression="lz4")
    header, body = messages[-1]
    body = bytearray(body)
    # A compressed buffer starts with its uncompressed length (little-endian int64); the
    # only buffer here (no nulls: no validity buffer) starts the body.
    struct.pack_into("<q", body, 0, 1 << 44)
    messages[-1] = (header, bytes(body))
    return messages
