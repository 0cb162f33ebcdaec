"""TPC-H queries and their reference answers (computed by DuckDB, see tpch/make_answers.py),
and the comparison every client's results go through."""
import csv
import datetime
import decimal
import math
import pathlib

HERE = pathlib.Path(__file__).resolve().parent / "tpch"
QUERIES = list(range(1, 23))


def query(n: int) -> str:
    return (HERE / "queries" / f"q{n}.sql").read_text()


def expected(n: int):
    with open(HERE / "answers" / f"q{n}.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def as_text(value) -> str:
    """A client's value as text, the way the reference CSV holds it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return str(value)


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def cells_equal(got: str, want: str) -> bool:
    if got == want:
        return True
    a, b = _number(got), _number(want)
    if a is not None and b is not None:
        # DuckDB answers avg() in double precision, DataFusion in decimal(…, 6): agree to
        # one part in a million, which still catches any wrong row or aggregate.
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    return False


def rows_equal(got, want) -> bool:
    return len(got) == len(want) and all(cells_equal(g, w) for g, w in zip(got, want))


def _sort_key(row):
    return tuple(("%.4f" % _number(c)) if _number(c) is not None else c for c in row)


def assert_matches(n: int, rows) -> None:
    """Compare a client's rows (any cell types) with the reference for query n."""
    _, want = expected(n)
    got = [[as_text(v) for v in row] for row in rows]
    assert len(got) == len(want), f"q{n}: {len(got)} rows, expected {len(want)}"
    if all(rows_equal(g, w) for g, w in zip(got, want)):
        return
    # Rows that tie on every ORDER BY key may come in either order: compare as multisets.
    got_sorted, want_sorted = sorted(got, key=_sort_key), sorted(want, key=_sort_key)
    for g, w in zip(got_sorted, want_sorted):
        assert rows_equal(g, w), f"q{n}: row {g} != expected {w}"
