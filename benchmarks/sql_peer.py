"""The SQL conformance cases against a peer: the BigQuery emulator on PyPI (`local-bigquery`), beside
kfkit's local warehouse, each answer compared with BigQuery's documented one.

    python benchmarks/sql_peer.py [--venv DIR] [--output benchmarks/results-sql-peer.txt]

It writes the table as text (--output) and, beside it, the tally by section as JSON
(results-sql-peer.json), which tests/sql_conformance/make_docs.py renders into docs/sql.md.

The emulator is installed by this script into its own virtualenv (Python 3.13, as it requires):
local-bigquery 0.3.2 on DuckDB 1.5.5 (0.4.0 wants DuckDB 2.x, whose wheel has no icu built in and
whose extensions cannot be downloaded here) with the DuckDB extensions it loads taken from their
PyPI wheels (duckdb-extension-icu, -json, -ducklake, -parquet, -spatial 1.5.5), placed in the
extension directory of a HOME of its own so nothing is downloaded. The real google-cloud-bigquery
client talks to it over its REST API, as a team's tests would.

Each case lands in one bucket per engine:
  agrees             the documented value and type (or the documented refusal)
  differs            another value or type: a silently different answer
  errs               an error where BigQuery answers
  answers-a-refusal  an answer where BigQuery refuses the query (also silently different)
  refuses            (kfkit) a documented refusal of the local warehouse: BigQuery answers the query, but
                     kfkit declines it rather than answer differently (cases whose note starts "refused")
  unscored           (the peer) such a case: its BigQuery value is not recorded, so the peer's answer is
                     not judged
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sql_conformance.conformance import _text, connection, evaluate, load_cases, same  # noqa: E402

EMULATOR = "local-bigquery==0.3.2"
DUCKDB = "1.5.5"
EXTENSIONS = ("icu", "json", "ducklake", "parquet", "spatial")
# the REST API's legacy type names, as google-cloud-bigquery's SchemaField.field_type gives them
TYPES = {"INTEGER": "INT64", "INT64": "INT64", "FLOAT": "FLOAT64", "FLOAT64": "FLOAT64", "BOOLEAN": "BOOL",
         "BOOL": "BOOL", "STRING": "STRING", "BYTES": "BYTES", "NUMERIC": "NUMERIC", "BIGNUMERIC": "BIGNUMERIC",
         "DATE": "DATE", "DATETIME": "DATETIME", "TIMESTAMP": "TIMESTAMP", "TIME": "TIME", "JSON": "JSON",
         "INTERVAL": "INTERVAL", "GEOGRAPHY": "GEOGRAPHY"}


def python313() -> str:
    """A Python 3.13 that runs: on PATH, else one of pyenv's (whose shim fails outside its version)."""
    candidates = [shutil.which("python3.13"), *sorted(map(str, Path.home().glob(".pyenv/versions/3.13*/bin/python3.13")))]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    raise SystemExit("local-bigquery needs Python 3.13: none found on PATH or under ~/.pyenv")


def install(venv: Path) -> Path:
    """The emulator's virtualenv and the HOME whose DuckDB extension directory holds the wheels' files."""
    python = python313()
    home = venv / "home"
    marker = venv / f".installed-{EMULATOR}"
    if not marker.exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, EMULATOR, f"duckdb=={DUCKDB}",
                        *(f"duckdb-extension-{name}=={DUCKDB}" for name in EXTENSIONS)], check=True)
        target = home / ".duckdb" / "extensions" / f"v{DUCKDB}" / "linux_amd64"
        target.mkdir(parents=True, exist_ok=True)
        for found in venv.glob(f"lib/python3.13/site-packages/duckdb_extension_*/extensions/v{DUCKDB}/*.duckdb_extension"):
            shutil.copy(found, target / found.name)
        marker.write_text("")
    return home


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(venv: Path, home: Path, data: Path) -> tuple[subprocess.Popen, str]:
    port, grpc_port = free_port(), free_port()
    data.mkdir(parents=True, exist_ok=True)
    log = open(data / "emulator.log", "w")
    process = subprocess.Popen([str(venv / "bin" / "local-bigquery"), "serve", "--host", "127.0.0.1", "--port",
                                str(port), "--grpc-port", str(grpc_port), "--project", "peer", "--dataset", "d",
                                "--data-dir", str(data)], env={**os.environ, "HOME": str(home)},
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"the emulator exited: see {data / 'emulator.log'}")
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the emulator did not listen within 60 s")


def bigquery_type(field) -> str:
    if field.field_type in ("RECORD", "STRUCT"):
        name = "STRUCT<" + ", ".join(f"{f.name} {bigquery_type(f)}" for f in field.fields) + ">"
    else:
        name = TYPES.get(field.field_type, field.field_type)
    return f"ARRAY<{name}>" if field.mode == "REPEATED" else name


def parameter(name: str, value):
    from google.cloud import bigquery

    def kind(v):
        return {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING"}.get(type(v), "STRING")

    if isinstance(value, list):
        return bigquery.ArrayQueryParameter(name, kind(value[0]) if value else "STRING", value)
    return bigquery.ScalarQueryParameter(name, kind(value), value)


def peer_answer(client, case):
    """(rows as the cases write them, {column: type}) from the emulator."""
    from google.cloud import bigquery

    query = case.sql if case.whole else f"SELECT {case.sql} AS v"
    config = bigquery.QueryJobConfig(query_parameters=[parameter(k, v) for k, v in (case.params or {}).items()])
    result = client.query(query, job_config=config).result(timeout=30)
    types = {field.name: bigquery_type(field) for field in result.schema}
    rows = []
    for row in result:
        rows.append([_text(value, types[name]) for name, value in zip(types, row.values())])
    return rows, types


def bucket(case, answer, engine: str = "kfkit") -> str:
    """Where one engine's answer to a case lands; answer: (rows, types) or the exception it raised."""
    if case.refused:  # BigQuery answers; the case records kfkit's refusal, not BigQuery's value
        if engine != "kfkit":
            return "unscored"
        return "refuses" if isinstance(answer, BaseException) else "answers-a-refusal"
    if isinstance(answer, BaseException):
        return "agrees" if case.error else "errs"
    if case.error:
        return "answers-a-refusal"
    rows, types = answer
    if case.rows is not None:
        return "agrees" if types == case.columns and same(rows, case.rows, case.approx) else "differs"
    if types != {"v": case.type} or not rows:
        return "differs"
    actual = rows[0][0]
    if not case.ordered and isinstance(actual, str) and isinstance(case.value, str):
        return "agrees" if sorted(actual.split(",")) == sorted(case.value.split(",")) else "differs"
    return "agrees" if same(actual, case.value, case.approx) else "differs"


def ask(function, *args):
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 - an engine's error is one of the outcomes measured
        return exc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(ROOT / ".kfkit" / "bench" / "local-bigquery"))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results-sql-peer.txt"))
    args = parser.parse_args(argv)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    venv = Path(args.venv)
    home = install(venv)
    data = venv / "data"
    shutil.rmtree(data, ignore_errors=True)
    process, url = start(venv, home, data)
    try:
        client = bigquery.Client(project="peer", credentials=AnonymousCredentials(),
                                 client_options=ClientOptions(api_endpoint=url))
        con = connection()
        cases = load_cases()
        tally = {"kfkit": collections.Counter(), "local-bigquery": collections.Counter()}
        by_section: dict[str, dict[str, collections.Counter]] = collections.defaultdict(
            lambda: {"kfkit": collections.Counter(), "local-bigquery": collections.Counter()})
        silent, peer_errors = [], []
        for case in cases:
            for engine, answer in (("kfkit", ask(evaluate, con, case)), ("local-bigquery", ask(peer_answer, client, case))):
                found = bucket(case, answer, engine)
                tally[engine][found] += 1
                by_section[case.section][engine][found] += 1
                if engine == "local-bigquery" and found == "errs":
                    message = " ".join(str(answer).split())
                    peer_errors.append({"section": case.section, "sql": case.sql, "error": message[:160]})
                if engine == "local-bigquery" and found in ("differs", "answers-a-refusal") and len(silent) < 15:
                    shown = answer if isinstance(answer, BaseException) else answer[0][:1]
                    silent.append(f"  {case.sql[:70]:<70}  documented {case.error or case.value!r:.30}  got {shown!r:.40}")
    finally:
        process.terminate()
        process.wait(timeout=30)

    kinds = ("agrees", "differs", "errs", "answers-a-refusal", "refuses", "unscored")
    lines = [f"{len(cases)} documented cases (tests/sql_conformance/cases.yaml), each against BigQuery's documented answer;",
             f"local-bigquery {EMULATOR.split('==')[1]} on DuckDB {DUCKDB} through google-cloud-bigquery's REST client",
             "", f"{'engine':<16}" + "".join(f"{k:>19}" for k in kinds)]
    for engine, counts in tally.items():
        lines.append(f"{engine:<16}" + "".join(f"{counts[k]:>19}" for k in kinds))
    lines += ["", "silently different (differs + answers-a-refusal) by section:",
              f"{'section':<44}{'cases':>7}{'kfkit':>8}{'local-bigquery':>16}"]
    for section, engines in by_section.items():
        total = sum(engines["kfkit"].values())
        wrong = {e: engines[e]["differs"] + engines[e]["answers-a-refusal"] for e in engines}
        lines.append(f"{section[:43]:<44}{total:>7}{wrong['kfkit']:>8}{wrong['local-bigquery']:>16}")
    lines += ["", "first silently different answers of local-bigquery:", *silent]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.output).write_text(text)
    Path(args.output).with_suffix(".json").write_text(json.dumps(
        tally_json(len(cases), tally, by_section, peer_errors, venv), indent=1) + "\n")
    return 0


def tally_json(total: int, tally, by_section, peer_errors: list, venv: Path) -> dict:
    """The run as data: how the peer ran, and each engine's buckets by section (make_docs renders it)."""
    from importlib.metadata import version

    peer_python = subprocess.run([str(venv / "bin" / "python"), "--version"], capture_output=True, text=True)
    return {
        "cases": total,
        "peer": {"package": EMULATOR, "duckdb": DUCKDB,
                 "extensions": [f"duckdb-extension-{name}=={DUCKDB}" for name in EXTENSIONS],
                 "python": peer_python.stdout.strip(),
                 "client": f"google-cloud-bigquery=={version('google-cloud-bigquery')} (REST) on Python "
                           f"{platform.python_version()}"},
        "totals": {engine: dict(counts) for engine, counts in tally.items()},
        "sections": [{"section": section, "cases": sum(engines["kfkit"].values()),
                      **{engine: dict(counts) for engine, counts in engines.items()}}
                     for section, engines in by_section.items()],
        "peer_errors": peer_errors,
    }


if __name__ == "__main__":
    sys.exit(main())
