"""Real-world taxi SQL on the local warehouse: the constructs of the Chicago taxi training queries in
GoogleCloudPlatform/vertex-pipelines-end-to-end-samples (ingest with a CURRENT_DATETIME filter in a
CTE, EXTRACT parts, ST_DISTANCE of ST_GEOGPOINTs, mean imputation cast to INT64; splits by
FARM_FINGERPRINT(TO_JSON_STRING(row))), written here in our own words, checked against a reference
computed in plain Python from the CSV with BigQuery's documented semantics.
"""

import csv
import math
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources

import farmhash
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfkit.components.ingest.ingest import SplitSpec, run_ingest
from kfkit.adapters.bigquery import schema_to_arrow
from kfkit.errors import IngestError, QueryError
from tests.conftest import leftovers, split_outputs

TAXI = "bigquery-public-data.chicago_taxi_trips.taxi_trips"
S2_EARTH_RADIUS_M = 6371010.0  # s2/s2earth.h, the sphere of BigQuery's geography functions

TRAINING_QUERY = f"""
WITH window_start AS (
  SELECT IF(@filter_start = '', CURRENT_DATETIME(), CAST(@filter_start AS DATETIME)) AS start_at
),
in_window AS (
  SELECT * FROM `{TAXI}`, window_start
  WHERE DATE(trip_start_timestamp)
    BETWEEN DATE_SUB(DATE(CAST(window_start.start_at AS DATETIME)), INTERVAL 3 MONTH)
        AND DATE_SUB(DATE(start_at), INTERVAL 2 MONTH)
),
average_duration AS (
  SELECT CAST(AVG(trip_seconds) AS INT64) AS mean_seconds FROM in_window
)
SELECT
  CAST(EXTRACT(DAYOFWEEK FROM trip_start_timestamp) AS FLOAT64) AS dayofweek,
  CAST(EXTRACT(HOUR FROM trip_start_timestamp) AS FLOAT64) AS hourofday,
  ST_DISTANCE(ST_GEOGPOINT(pickup_longitude, pickup_latitude),
              ST_GEOGPOINT(dropoff_longitude, dropoff_latitude)) AS trip_distance,
  trip_miles,
  CAST(CASE WHEN trip_seconds IS NULL THEN a.mean_seconds
            WHEN trip_seconds <= 0 THEN a.mean_seconds
            ELSE trip_seconds END AS FLOAT64) AS trip_seconds,
  payment_type,
  company,
  (fare + tips) AS total_fare,
FROM in_window AS t, average_duration AS a
WHERE trip_miles > 0 AND fare > 0 AND fare < 1500
  AND `fare` IS NOT NULL AND `trip_start_timestamp` IS NOT NULL
  AND `pickup_longitude` IS NOT NULL AND `pickup_latitude` IS NOT NULL
  AND `dropoff_longitude` IS NOT NULL AND `dropoff_latitude` IS NOT NULL
  AND `payment_type` IS NOT NULL AND `company` IS NOT NULL
"""
PARAMS = {"filter_start": "2016-06-01 00:00:00"}
COLUMNS = ["dayofweek", "hourofday", "trip_distance", "trip_miles", "trip_seconds", "payment_type", "company",
           "total_fare"]


def _number(text):
    return float(text) if text not in ("", None) else None


def _months_back(day: date, months: int) -> date:
    month = day.month - months
    year = day.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return date(year, month, min(day.day, 28))


def reference_rows() -> list[tuple]:
    """The query's answer computed from the sample CSV with BigQuery's documented rules."""
    path = resources.files("kfkit") / "data" / "chicago_taxi_sample.csv"
    with open(path, newline="") as handle:
        trips = list(csv.DictReader(handle))
    start = date(2016, 6, 1)
    low, high = _months_back(start, 3), _months_back(start, 2)
    window = []
    for trip in trips:
        moment = datetime.fromtimestamp(int(trip["trip_start_timestamp"]), tz=timezone.utc)
        if low <= moment.date() <= high:
            window.append((trip, moment))
    seconds = [int(t["trip_seconds"]) for t, _ in window if t["trip_seconds"] != ""]
    # CAST(FLOAT64 AS INT64) rounds halfway cases away from zero (conversion functions doc)
    mean = int(Decimal(sum(seconds) / len(seconds)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    rows = []
    for trip, moment in window:
        fare, tips, miles = _number(trip["fare"]), _number(trip["tips"]), _number(trip["trip_miles"])
        coordinates = [_number(trip[c]) for c in ("pickup_longitude", "pickup_latitude", "dropoff_longitude",
                                                   "dropoff_latitude")]
        if None in coordinates or not trip["payment_type"] or not trip["company"] or fare is None:
            continue
        if not (miles is not None and miles > 0 and 0 < fare < 1500):
            continue
        lng1, lat1, lng2, lat2 = (math.radians(c) for c in coordinates)
        # S2LatLng::GetDistance: haversine
        haversine = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
        distance = S2_EARTH_RADIUS_M * 2 * math.asin(math.sqrt(min(1.0, haversine)))
        raw_seconds = trip["trip_seconds"]
        duration = mean if raw_seconds == "" or int(raw_seconds) <= 0 else int(raw_seconds)
        total = None if tips is None else fare + tips
        rows.append((float(moment.isoweekday() % 7 + 1), float(moment.hour), distance, miles, float(duration),
                     trip["payment_type"], trip["company"], total))
    return rows


def _key(row):
    return tuple("" if v is None else (round(v, 6) if isinstance(v, float) else v) for v in row)


def _close(a, b):
    return all((x is None and y is None) or (isinstance(x, float) and math.isclose(x, y, rel_tol=1e-9))
               or x == y for x, y in zip(a, b))


@pytest.fixture(scope="module")
def ingested(shared_root):
    from kfkit.warehouse.local import LocalWarehouse
    return pa.Table.from_batches(list(LocalWarehouse(shared_root).query_batches(TRAINING_QUERY, PARAMS)))


def test_taxi_training_query_gives_the_rows_bigquery_would(ingested):
    expected = sorted(reference_rows(), key=_key)

    actual = sorted((tuple(r[c] for c in COLUMNS) for r in ingested.to_pylist()), key=_key)

    assert len(expected) > 20
    assert len(actual) == len(expected)
    assert all(_close(a, e) for a, e in zip(actual, expected))


def test_taxi_training_query_result_has_bigquery_types(ingested):
    from google.cloud.bigquery import SchemaField
    bigquery_schema = [SchemaField(name, kind) for name, kind in [
        ("dayofweek", "FLOAT64"), ("hourofday", "FLOAT64"), ("trip_distance", "FLOAT64"), ("trip_miles", "FLOAT64"),
        ("trip_seconds", "FLOAT64"), ("payment_type", "STRING"), ("company", "STRING"), ("total_fare", "FLOAT64")]]

    assert ingested.schema == schema_to_arrow(bigquery_schema)


def _zetasql_json(row: dict) -> str:
    # TO_JSON_STRING of a row of FLOAT64 and STRING columns, per zetasql/public/functions/json_format.cc:
    # doubles by RoundTripDoubleToString (%.15g, %.17g when that does not round-trip), no spaces
    def number(x):
        text = "%.15g" % x
        return text if float(text) == x else "%.17g" % x

    def string(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    parts = []
    for name, value in row.items():
        rendered = "null" if value is None else number(value) if isinstance(value, float) else string(value)
        parts.append(f'"{name}":{rendered}')
    return "{" + ",".join(parts) + "}"


def test_split_by_fingerprint_of_the_row_json_matches_bigquery(warehouse, ingested):
    warehouse.write_table("preprocessing.ingested", ingested)
    split = ("SELECT * FROM `local-project.preprocessing.ingested` AS t "
             "WHERE MOD(ABS(FARM_FINGERPRINT(TO_JSON_STRING(t))), 10) IN ({})")
    rows = ingested.to_pylist()
    buckets = []
    for row in rows:
        unsigned = farmhash.fingerprint64(_zetasql_json(row))
        signed = unsigned - (1 << 64) if unsigned >= (1 << 63) else unsigned
        buckets.append(abs(signed) % 10)

    sizes = {name: pa.Table.from_batches(list(warehouse.query_batches(split.format(members)))).num_rows
             for name, members in (("train", "0, 1, 2, 3, 4, 5, 6, 7"), ("validation", "8"), ("test", "9"))}

    assert sizes == {"train": sum(b <= 7 for b in buckets), "validation": buckets.count(8), "test": buckets.count(9)}
    assert sum(sizes.values()) == len(rows)


def test_taxi_training_query_runs_through_the_ingest_component(shared_root, tmp_path, ingested):
    outputs = split_outputs(tmp_path)

    result = run_ingest(TRAINING_QUERY, outputs, split=SplitSpec({"train": 0.8, "eval": 0.1, "test": 0.1}, "*"),
                        label_column="total_fare", query_parameters=PARAMS, local_root=str(shared_root))

    assert sum(result.rows.values()) == ingested.num_rows
    written = pq.read_table(outputs["train"])
    assert written.schema.field("trip_distance").type == pa.float64()
    assert written.schema.field("dayofweek").type == pa.float64()


def test_key_computed_from_current_datetime_is_refused_but_a_filter_is_not(shared_root, tmp_path):
    keyed = f"SELECT CAST(CURRENT_DATETIME() AS STRING) AS k, fare FROM `{TAXI}`"
    outputs = split_outputs(tmp_path)

    with pytest.raises(IngestError, match=r"CURRENT_DATETIME\(\)"):
        run_ingest(keyed, outputs, split=SplitSpec({"train": 1.0}, "k"), label_column="fare",
                   local_root=str(shared_root))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("query, message", [
    ("SELECT NOT_A_FUNCTION(fare) AS x FROM `{t}`", r"line 1: function NOT_A_FUNCTION is not known"),
    ("SELECT fare,\n  APPROX_TOP_SUM(company, fare, 2) AS c FROM `{t}` GROUP BY fare",
     r"line 2: APPROX_TOP_SUM is not supported.*ORDER BY SUM"),
    ("SELECT no_such_column FROM `{t}`", r"no_such_column"),
    ("SELECT fare FROM `{t}` AS a, `{t}` AS b", r"fare.*ambiguous|ambiguous.*fare"),
    ("SELECT SUBSTR(fare, 1) AS s FROM `{t}`", r"SUBSTR|substr"),
    ("SELECT ST_GEOGPOINT(pickup_longitude, pickup_latitude) AS p FROM `{t}`", r"column 'p' is a GEOGRAPHY"),
    ("SELECT INTERVAL 1 DAY AS i FROM `{t}`", r"column 'i' has the type INTERVAL"),
])
def test_query_bigquery_would_reject_or_local_cannot_carry_fails_before_any_file(shared_root, tmp_path, query,
                                                                                   message):
    outputs = split_outputs(tmp_path / "out")

    with pytest.raises(QueryError, match=message):
        run_ingest(query.format(t=TAXI), outputs, split=SplitSpec({"train": 1.0}, "*"), label_column="",
                   local_root=str(shared_root))
    assert leftovers(tmp_path) == []


def test_every_bigquery_type_arrives_as_the_storage_read_api_delivers_it(warehouse):
    from google.cloud.bigquery import SchemaField
    query = ("SELECT 1 AS i, 1.5 AS f, NUMERIC '1.25' AS n, 'x' AS s, b'x' AS by, TRUE AS b, DATE '2020-01-01' AS d, "
             "DATETIME '2020-01-01 10:00:00' AS dt, TIMESTAMP '2020-01-01 10:00:00+00' AS ts, TIME '10:00:00' AS t, "
             "[1, 2] AS a, STRUCT(1 AS x, 'y' AS y) AS st, SUM(2) AS total, COUNTIF(TRUE) AS c")
    expected = schema_to_arrow([
        SchemaField("i", "INT64"), SchemaField("f", "FLOAT64"), SchemaField("n", "NUMERIC"), SchemaField("s", "STRING"),
        SchemaField("by", "BYTES"), SchemaField("b", "BOOL"), SchemaField("d", "DATE"), SchemaField("dt", "DATETIME"),
        SchemaField("ts", "TIMESTAMP"), SchemaField("t", "TIME"), SchemaField("a", "INT64", mode="REPEATED"),
        SchemaField("st", "RECORD", fields=[SchemaField("x", "INT64"), SchemaField("y", "STRING")]),
        SchemaField("total", "INT64"), SchemaField("c", "INT64")])

    assert warehouse.describe(query) == expected
