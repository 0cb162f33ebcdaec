"""A minimal PostgreSQL wire client, for tests that must control the exact messages sent
(one Query message holding several statements, as Npgsql sends on connect)."""
import socket
import struct


class PgRaw:
    def __init__(self, host, port, user, password, database="sluice"):
        self.sock = socket.create_connection((host, port), timeout=30)
        params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                          for k, v in (("user", user), ("database", database)))
        body = struct.pack("!i", 196608) + params + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        while True:
            kind, payload = self.read()
            if kind == b"R" and struct.unpack("!i", payload[:4])[0] == 3:
                self.send(b"p", password.encode() + b"\0")
            elif kind == b"E":
                raise RuntimeError(self.error(payload))
            elif kind == b"Z":
                return

    def send(self, kind, payload):
        self.sock.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)

    def read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
        return data

    def read(self):
        kind = self.read_exact(1)
        (length,) = struct.unpack("!i", self.read_exact(4))
        return kind, self.read_exact(length - 4)

    @staticmethod
    def error(payload):
        fields = {}
        for part in payload.split(b"\0"):
            if part:
                fields[chr(part[0])] = part[1:].decode()
        return fields

    def query(self, sql):
        """Send one Query message; return (results, messages) up to ReadyForQuery. Each
        result is {"columns": [...], "rows": [[text…]…], "tag": str} or {"error": fields}."""
        self.send(b"Q", sql.encode() + b"\0")
        results, current, kinds = [], None, []
        while True:
            kind, payload = self.read()
            kinds.append(kind)
            if kind == b"T":
                (n,) = struct.unpack("!h", payload[:2])
                pos, cols = 2, []
                for _ in range(n):
                    end = payload.index(b"\0", pos)
                    name = payload[pos:end].decode()
                    table_oid, attnum, type_oid = struct.unpack("!ihi", payload[end + 1:end + 11])
                    cols.append((name, type_oid, table_oid, attnum))
                    pos = end + 1 + 18
                current = {"columns": cols, "rows": []}
            elif kind == b"D":
                (n,) = struct.unpack("!h", payload[:2])
                pos, row = 2, []
                for _ in range(n):
                    (size,) = struct.unpack("!i", payload[pos:pos + 4])
                    pos += 4
                    if size < 0:
                        row.append(None)
                    else:
                        row.append(payload[pos:pos + size].decode())
                        pos += size
                current["rows"].append(row)
            elif kind == b"C":
                current = current or {"columns": [], "rows": []}
                current["tag"] = payload.rstrip(b"\0").decode()
                results.append(current)
                current = None
            elif kind == b"E":
                results.append({"error": self.error(payload)})
            elif kind == b"Z":
                return results, kinds

    def close(self):
        try:
            self.send(b"X", b"")
        finally:
            self.sock.close()
