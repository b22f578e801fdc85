"""DuckDB yardstick for `ward bench ingest`: load the same CSV into a table keyed on
(provider, MRN, UTC timestamp) with INSERT OR IGNORE, twice (first load, re-upload).
Prints one JSON line: rows, first_load_s, reload_s."""
import json
import sys
import time

import duckdb

path = sys.argv[1]
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(
    "CREATE TABLE visits (provider VARCHAR, mrn VARCHAR, ts TIMESTAMPTZ, date_time VARCHAR,"
    " first_name VARCHAR, last_name VARCHAR, notes VARCHAR, PRIMARY KEY (provider, mrn, ts))"
)
load = (
    "INSERT OR IGNORE INTO visits SELECT 'PROV001', medical_record_number, TRY_CAST(date_time AS TIMESTAMPTZ),"
    " date_time, first_name, last_name, doctors_notes FROM read_csv(?, header=true, all_varchar=true)"
    " WHERE TRY_CAST(date_time AS TIMESTAMPTZ) IS NOT NULL AND medical_record_number IS NOT NULL"
)
start = time.perf_counter()
con.execute(load, [path])
first = time.perf_counter() - start
start = time.perf_counter()
con.execute(load, [path])
reload = time.perf_counter() - start
rows = con.execute("SELECT count(*) FROM read_csv(?, header=true, all_varchar=true)", [path]).fetchone()[0]
print(json.dumps({"rows": rows, "first_load_s": first, "reload_s": reload}))
