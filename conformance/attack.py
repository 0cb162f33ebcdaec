"""One way to send SQL through each front-end, for the attack suite: psycopg (pg), ADBC
(Flight SQL), databricks-sql-connector (HS2) and the Statement Execution API (REST). Each
returns the rows, or raises `Refused` with the code the front-end answered (SQLSTATE, gRPC
status name, HS2 SQLSTATE, REST error code) and the message."""
import json
import urllib.error
import urllib.request

import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
import psycopg
from databricks import sql as dbsql

FRONT_ENDS = ["pg", "flight", "hs2", "rest"]


class Refused(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def run(server, front, token, sql):
    return {"pg": pg_rows, "flight": flight_rows, "hs2": hs2_rows, "rest": rest_rows}[front](server, token, sql)


def pg_rows(server, token, sql):
    try:
        with psycopg.connect(server.dsn(password=token), autocommit=True) as conn:
            cur = conn.execute(sql)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
    except psycopg.Error as e:
        # A refused login has no diagnostics object: its SQLSTATE is in the text.
        raise Refused(e.sqlstate or "connection", e.diag.message_primary or str(e)) from None


def flight_rows(server, token, sql):
    kwargs = {fs.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
    try:
        with flight_sql.connect(f"grpc://{server.flight}", db_kwargs=kwargs, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute(sql)
                return [tuple(r) for r in cur.fetchall()]
    except Exception as e:  # adbc_driver_manager errors carry the gRPC status in their text
        text = str(e)
        code = next((c for c in ("INVALID_ARGUMENT", "PERMISSION_DENIED", "NOT_FOUND",
                                 "RESOURCE_EXHAUSTED", "UNAUTHENTICATED", "UNIMPLEMENTED",
                                 "UNAVAILABLE", "INTERNAL", "CANCELLED")
                     if c in text.upper().replace(" ", "_")), "UNKNOWN")
        raise Refused(code, text) from None


def hs2_rows(server, token, sql):
    try:
        with dbsql.connect(server_hostname=server.http.split(":")[0], http_path="/sql/1.0/warehouses/default",
                           access_token=token, _connection_uri=f"http://{server.http}/sql/1.0/warehouses/default",
                           enable_telemetry=False, _retry_stop_after_attempts_count=1) as conn:
            with conn.cursor() as cur:
                cur.execute(sql)
                return [tuple(r) for r in cur.fetchall()]
    except Exception as e:  # the connector names the failure by its class, not a SQLSTATE
        raise Refused(type(e).__name__, str(e)) from None


def rest(server, token, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{server.http_url}{path}", data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"message": raw.decode(errors="replace")}


def rest_rows(server, token, sql):
    status, answer = rest(server, token, "POST", "/api/2.0/sql/statements",
                          {"statement": sql, "warehouse_id": "default", "wait_timeout": "50s"})
    if status != 200:
        raise Refused(answer.get("error_code", str(status)), answer.get("message", ""))
    state = answer["status"]["state"]
    if state != "SUCCEEDED":
        error = answer["status"].get("error", {})
        raise Refused(error.get("error_code", state), error.get("message", ""))
    return [tuple(r) for r in (answer.get("result") or {}).get("data_array") or []]
