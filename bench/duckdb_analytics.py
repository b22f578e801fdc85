"""DuckDB yardstick for `ward bench analytics`: the per-state and expiring-accreditations
queries over the same facility file (JSON lines, `read_json`) and over Ward's Parquet
dataset (`read_parquet`), on 2 threads. Prints one JSON line of timings (seconds) and the
per-state rows, so the Rust side can check that both engines agree.

Usage: duckdb_analytics.py FACILITIES.jsonl DATASET.parquet AS_OF MONTHS"""
import json
import sys
import time

import duckdb

json_path, parquet_path, as_of, months = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
con = duckdb.connect()
con.execute("SET threads TO 2")

PER_STATE = f"""
WITH acc AS (SELECT facility_id, unnest(accreditations) AS a FROM {{src}}),
     v AS (SELECT facility_id, count(*) AS valid FROM acc
           WHERE CAST(a.valid_until AS DATE) >= DATE '{as_of}' GROUP BY facility_id)
SELECT {{state}} AS state, count(*) AS facility_count, sum(f.employee_count) AS total_employees,
       count(v.facility_id) AS accredited_facilities, coalesce(sum(v.valid), 0) AS valid_accreditations
FROM {{src}} f LEFT JOIN v ON v.facility_id = f.facility_id
GROUP BY 1 ORDER BY 1
"""
EXPIRING = f"""
SELECT facility_id, facility_name, {{state_bare}} AS state, a.accreditation_body AS accreditation_body, a.accreditation_id AS accreditation_id,
       CAST(a.valid_until AS DATE) AS valid_until,
       CAST(a.valid_until AS DATE) - DATE '{as_of}' AS days_left
FROM (SELECT facility_id, facility_name, {{state_col}}, unnest(accreditations) AS a FROM {{src}})
WHERE CAST(a.valid_until AS DATE) >= DATE '{as_of}'
  AND CAST(a.valid_until AS DATE) <= DATE '{as_of}' + INTERVAL '{months} months'
ORDER BY valid_until, facility_id, accreditation_id
"""


def timed(sql, *params):
    start = time.perf_counter()
    rows = con.execute(sql, list(params)).fetchall()
    return time.perf_counter() - start, rows


json_src = "read_json(?, format='newline_delimited')"
json_per_state = PER_STATE.format(src=json_src, state="f.location.state")
json_expiring = EXPIRING.format(src=json_src, state_bare="location.state", state_col="location")
# Each query straight from the file (it is read once per query).
file_per_state_s, per_state_rows = timed(json_per_state, json_path, json_path)
file_expiring_s, expiring_rows = timed(json_expiring, json_path)
# Load the file once into a table, then both queries (what Ward's "from JSON" path does).
start = time.perf_counter()
con.execute(f"CREATE TABLE f AS SELECT * FROM {json_src}", [json_path])
load_s = time.perf_counter() - start
table_per_state_s, _ = timed(PER_STATE.format(src="f", state="f.location.state"))
table_expiring_s, _ = timed(EXPIRING.format(src="f", state_bare="location.state", state_col="location"))

pq_src = "read_parquet(?)"
parquet_per_state_s, parquet_rows = timed(PER_STATE.format(src=pq_src, state="f.state"), parquet_path, parquet_path)
parquet_expiring_s, _ = timed(EXPIRING.format(src=pq_src, state_bare="state", state_col="state"), parquet_path)

print(json.dumps({
    "version": duckdb.__version__,
    "file_per_state_s": file_per_state_s,
    "file_expiring_s": file_expiring_s,
    "load_s": load_s,
    "table_per_state_s": table_per_state_s,
    "table_expiring_s": table_expiring_s,
    "parquet_per_state_s": parquet_per_state_s,
    "parquet_expiring_s": parquet_expiring_s,
    "expiring_rows": len(expiring_rows),
    "per_state": [list(map(lambda v: v if isinstance(v, (int, str)) else int(v), r)) for r in per_state_rows],
    "parquet_per_state": [list(map(lambda v: v if isinstance(v, (int, str)) else int(v), r)) for r in parquet_rows],
}))
