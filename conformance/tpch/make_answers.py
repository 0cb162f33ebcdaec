"""Compute the TPC-H reference answers with DuckDB, over the Parquet files sluice generated.

    python conformance/tpch/make_answers.py <sluice-data-dir>/tpch

Writes conformance/tpch/answers/qN.csv (header row, then the rows; NULL as empty). The
answers are checked in; regenerate them only when the queries or the demo scale change.
The queries are sluice's own files with the `tpch.` schema prefix resolved to views.
"""
import csv
import pathlib
import sys

import duckdb

HERE = pathlib.Path(__file__).parent
TABLES = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]


def main(data: pathlib.Path) -> None:
    db = duckdb.connect()
    db.execute("create schema tpch")
    for table in TABLES:
        db.execute(f"create view tpch.{table} as select * from read_parquet('{data / table}/*.parquet')")
    for n in range(1, 23):
        sql = (HERE / "queries" / f"q{n}.sql").read_text()
        cursor = db.execute(sql)
        header = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        with open(HERE / "answers" / f"q{n}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for row in rows:
                writer.writerow(["" if v is None else v for v in row])
        print(f"q{n}: {len(rows)} rows")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
