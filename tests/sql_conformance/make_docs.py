"""Write docs/sql.md from the conformance cases: python tests/sql_conformance/make_docs.py"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kfkit.warehouse.semantics import REFUSED_FUNCTIONS  # noqa: E402
from tests.sql_conformance.conformance import load_cases  # noqa: E402

DOC = ROOT / "docs" / "sql.md"
PEER = ROOT / "benchmarks" / "results-sql-peer.json"

HEADER = """# BigQuery SQL on the local warehouse

*Generated from `tests/sql_conformance/cases.yaml` by `python tests/sql_conformance/make_docs.py`;
the test suite fails when this page and the cases disagree.*

The embedded backend answers BigQuery (GoogleSQL) queries on DuckDB: sqlglot translates the syntax,
and `kfkit/warehouse/semantics.py` rewrites every construct whose DuckDB value differs from BigQuery's
documented one. Each row below is a test: the query, the value and type BigQuery documents for it
(the link is the documentation section it comes from), checked on every CI run. Result columns
reach the datasets with the Arrow types BigQuery's Storage Read API delivers (INT64 as int64,
NUMERIC as decimal128(38, 9), DATETIME as timestamp[us], TIMESTAMP as timestamp[us, UTC], ARRAY as
list, STRUCT as struct), so training sees the same schema on both backends.

**Never silently different**: a construct whose BigQuery value the local warehouse cannot give is
refused before the query runs, with the function, its line and what to write instead.
"""

DIFFERENCES = """
## Known differences and limits

- Result column types BigQuery does not have (INTERVAL, MAP, UUID, ...) and GEOGRAPHY columns are
  refused by column name; select `ST_ASTEXT(point)` or `ST_X`/`ST_Y` instead of a GEOGRAPHY.
- Geography is points only (`ST_GEOGPOINT`, `ST_DISTANCE`, `ST_DWITHIN`, `ST_X`, `ST_Y`,
  `ST_ASTEXT`), measured on S2's sphere of radius 6,371,010 m as BigQuery does with
  `use_spheroid => FALSE` (its default).
- `UNNEST` of an `ARRAY<STRUCT>` does not expand the struct's fields into columns: select
  `u.field` from the alias instead (the query fails loudly otherwise).
- `FORMAT_*` and `PARSE_*` need a literal format; `%Z`/`%z` and `STRING(timestamp, zone)` are
  refused; `DATE_TRUNC(..., ISOYEAR)` is refused.
- `SAFE.`-prefixed functions are refused; write the function with a guard (`SAFE_CAST`, `IF`).
- The order of `STRING_AGG`/`ARRAY_AGG` without `ORDER BY` is unspecified on both backends.
- Errors BigQuery raises (division by zero, out-of-range `OFFSET`, INT64 overflow, a NULL in an
  `ARRAY_AGG`, a non-integer string cast to INT64) are raised locally too; the messages differ.
- `RAND()`, `GENERATE_UUID()` and the current time differ between runs on both backends; ingest
  refuses split keys computed from them (a `CURRENT_DATETIME()` that only filters rows is fine).
"""


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def peer_table(cases: int) -> list[str]:
    """The peer tally (benchmarks/sql_peer.py writes it) beside kfkit's, by section."""
    if not PEER.exists():
        return []
    run = json.loads(PEER.read_text())
    peer = run["peer"]
    lines = ["\n## Beside a peer: the local-bigquery emulator\n",
             f"`python benchmarks/sql_peer.py` ran {run['cases']} of these {cases} cases on {peer['package']} "
             f"({peer['python']}, DuckDB {peer['duckdb']}, its extensions from the wheels "
             f"{', '.join(peer['extensions'])}, nothing downloaded), asked through {peer['client']}. "
             "*refuses*: kfkit declines a query BigQuery answers (documented above); those cases record no "
             "BigQuery value, so the peer's answer is *unscored*. *errs*: the peer could not run the query.\n",
             "| section | cases | kfkit agrees | kfkit refuses | peer agrees | peer differs | peer answers a refusal "
             "| peer errs | peer unscored |", "|---|---|---|---|---|---|---|---|---|"]
    for row in run["sections"] + [{"section": "**all**", "cases": run["cases"], **run["totals"]}]:
        k, b = row["kfkit"], row["local-bigquery"]
        lines.append(f"| {row['section']} | {row['cases']} | {k.get('agrees', 0)} | {k.get('refuses', 0)} | "
                     f"{b.get('agrees', 0)} | {b.get('differs', 0)} | {b.get('answers-a-refusal', 0)} | "
                     f"{b.get('errs', 0)} | {b.get('unscored', 0)} |")
    return lines


def render() -> str:
    cases = load_cases()
    lines = [HEADER, f"{len(cases)} cases in {len({c.section for c in cases})} sections.\n"]
    section = None
    for case in cases:
        if case.section != section:
            section = case.section
            lines += [f"\n## {section}\n", "| query | BigQuery's answer | type | documented in |", "|---|---|---|---|"]
        if case.error:
            answer, kind = f"error: {case.error}", "—"
        elif case.rows is not None:
            answer, kind = _cell(case.rows), ", ".join(f"{k} {v}" for k, v in case.columns.items())
        else:
            answer, kind = _cell(case.value), case.type
        if case.note:
            answer += f" ({_cell(case.note)})"
        lines.append(f"| `{_cell(case.sql)}` | {answer} | {kind} | [{case.doc.split('#')[-1]}]({case.url}) |")
    lines += peer_table(len(cases))
    lines += ["\n## Refused functions\n", "| function | write instead |", "|---|---|"]
    lines += [f"| `{name}` | {instead} |" for name, instead in sorted(REFUSED_FUNCTIONS.items())]
    lines.append(DIFFERENCES)
    return "\n".join(lines)


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
