"""``python -m benchmarks <scenario>``: ingest, scaling, verify, query (see BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import machine
from benchmarks.report import console, contenders_table, targets_table
from benchmarks.sources import PROVINCES
from exchange.datasets import DATASETS


def _sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part]


def _provinces(text: str) -> list[str]:
    if text == "all":
        return list(PROVINCES)
    chosen = [p.strip() for p in text.split(",")]
    unknown = [p for p in chosen if p not in PROVINCES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown province(s) {unknown}; choose from {PROVINCES} or all")
    return chosen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dataset", default="e_license", choices=list(DATASETS))
    common.add_argument("--json", dest="json_out", type=Path, help="also write the results as JSON here ('-' = stdout)")
    common.add_argument("--workdir", type=Path, help="where the temporary sandboxes and lakes go (default: $TMPDIR)")

    ingest = sub.add_parser("ingest", parents=[common], help="scenario 1: ingest end to end vs limit, peer, dict path")
    ingest.add_argument("--province", type=_provinces, default=["jiangsu"], help="a province, a comma list, or all")
    ingest.add_argument("--records", type=int, default=1_000_000)
    ingest.add_argument("--repeat", type=int, default=1, help="runs per contender; the fastest is kept")
    ingest.add_argument("--dict-sample", type=int, default=50_000, help="records the dlt dict path really loads")
    ingest.add_argument("--profile", type=Path, metavar="PREFIX",
                        help="one more, unmeasured run of ours under pyinstrument: PREFIX.txt and PREFIX.html "
                             "(PREFIX-<province>.* for several provinces)")

    scaling = sub.add_parser("scaling", parents=[common], help="scenario 2: time per record and peak RSS vs size")
    scaling.add_argument("--province", type=_provinces, default=["jiangsu"])
    scaling.add_argument("--records", type=_sizes, default=[100_000, 300_000, 1_000_000])

    pull = sub.add_parser("pull", parents=[common], help="issue 3: peak RSS of a pull vs its size (bounded memory)")
    pull.add_argument("--province", type=_provinces, default=["jiangsu"])
    pull.add_argument("--records", type=_sizes, default=[250_000, 1_000_000])

    four = sub.add_parser("concurrent", parents=[common], help="scenario 5: four provinces at once vs each alone")
    four.add_argument("--records", type=int, default=1_000_000, help="records per province")

    verify = sub.add_parser("verify", parents=[common], help="scenario 4: full verify vs sha256sum")
    verify.add_argument("--province", type=_provinces, default=["jiangsu"])
    verify.add_argument("--records", type=int, default=1_000_000, help="records per batch")
    verify.add_argument("--batches", type=int, default=2, help="batches (windows) committed before verifying")
    verify.add_argument("--lake-gb", type=float, help="instead of --batches: commit synthetic batches (records "
                        "generated once, re-sent weekly, through the real validate and commit stages) until the "
                        "lake holds this many GiB of Parquet; --records is then the size of the one new batch")
    verify.add_argument("--batch-records", type=int, default=2_000_000, help="records per synthetic batch")

    readers = sub.add_parser("readers", parents=[common], help="issue 20: Arrow-native SQL readers for the limit")
    readers.add_argument("--records", type=int, default=1_000_000)
    readers.add_argument("--repeat", type=int, default=1, help="runs per reader; the fastest is kept")
    readers.add_argument("--server", action="append", default=[], metavar="URL",
                         help="also a PostgreSQL / MariaDB server (SQLAlchemy URL); seeded in a schema of its own")

    files = sub.add_parser("files", parents=[common], help="issue 20: file provinces' native readers")
    files.add_argument("--records", type=int, default=1_000_000)
    files.add_argument("--repeat", type=int, default=1, help="runs per reader, taking turns; the fastest is kept")
    files.add_argument("--province", type=_provinces, default=["jiangsu", "anhui"])

    query = sub.add_parser("query", parents=[common], help="scenario 3: department queries vs raw DuckDB, HTTP p50/p99")
    query.add_argument("--rows", type=int, default=10_000_000, help="e-licences in the lake table")
    query.add_argument("--repeat", type=int, default=5, help="timed runs per query (median kept)")
    query.add_argument("--clients", type=int, default=20, help="concurrent HTTP clients (0: skip the HTTP part)")
    query.add_argument("--http-seconds", type=float, default=15.0, help="duration of the HTTP load")
    query.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows generated and committed per snapshot")
    query.add_argument("--catalog", metavar="URL", help="catalogue the lake in PostgreSQL: the server's postgresql:// "
                       "URL (a throwaway database is created on it and dropped afterwards); default a DuckDB file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenario, print its tables, optionally write JSON; exit 1 if a contender failed."""
    args = _parser().parse_args(argv)
    out = console()
    doc: dict[str, Any] = {"scenario": args.scenario, "machine": machine(), "results": []}
    out.print(f"machine: {doc['machine']}")
    if args.scenario == "ingest":
        from benchmarks.ingest import profile_prefix, run_ingest

        for province in args.province:
            prefix = None if args.profile is None else profile_prefix(args.profile, province, len(args.province) > 1)
            result = run_ingest(
                province, args.dataset, args.records, repeat=args.repeat, dict_sample=args.dict_sample,
                workdir=args.workdir, profile=prefix,
            )
            title = f"ingest {province} {args.dataset}: {args.records:,} records ({result.defects:,} defective)"
            out.print(contenders_table(title, result.contenders, args.records))
            out.print(targets_table(f"targets, {province} (issue 8, scenario 1)", result.targets))
            if result.profile:
                reports = result.profile
                out.print(f"pyinstrument profile of ours ({reports['seconds']} s, unmeasured run): "
                          f"{reports['text']} (call tree), {reports['html']}, {reports['session']}")
            doc["results"].append(result.to_json())
    elif args.scenario == "pull":
        from benchmarks.pull_memory import run_pull_memory

        for province in args.province:
            pulled = run_pull_memory(province, args.dataset, args.records, workdir=args.workdir)
            out.print(pulled.table())
            out.print(targets_table(f"targets, {province} (issue 3, bounded pull memory)", pulled.targets))
            doc["results"].append(pulled.to_json())
    elif args.scenario == "concurrent":
        from benchmarks.concurrent import run_concurrent

        four = run_concurrent(args.dataset, args.records, workdir=args.workdir)
        out.print(four.table())
        out.print(targets_table("targets (issue 8, scenario 5)", four.targets))
        doc["results"].append(four.to_json())
    elif args.scenario == "scaling":
        from benchmarks.scaling import run_scaling

        for province in args.province:
            scaled = run_scaling(province, args.dataset, args.records, workdir=args.workdir)
            out.print(scaled.table())
            out.print(targets_table(f"targets, {province} (issue 8, scenario 2)", scaled.targets))
            doc["results"].append(scaled.to_json())
    elif args.scenario == "verify":
        from benchmarks.verify_scenario import run_verify_scenario

        for province in args.province:
            verified = run_verify_scenario(
                province, args.dataset, args.records, args.batches, workdir=args.workdir, lake_gb=args.lake_gb,
                batch_records=args.batch_records,
            )
            out.print(verified.table())
            out.print(targets_table(f"targets, {province} (issue 8, scenario 4)", verified.targets))
            doc["results"].append(verified.to_json())
    elif args.scenario == "readers":
        from benchmarks.sql_readers import run_readers

        measured = run_readers(args.dataset, args.records, args.server, workdir=args.workdir, repeat=args.repeat)
        out.print(measured.table())
        out.print(targets_table("targets (issue 20, target 1)", measured.targets))
        doc["results"].append(measured.to_json())
    elif args.scenario == "files":
        from benchmarks.file_readers import run_file_readers

        read = run_file_readers(args.dataset, args.records, workdir=args.workdir, repeat=args.repeat,
                                provinces=args.province)
        out.print(read.table())
        out.print(targets_table("targets (issue 20, target 1, file provinces)", read.targets))
        doc["results"].append(read.to_json())
    elif args.scenario == "query":
        from benchmarks.query import run_query_scenario

        scenario = run_query_scenario(args.rows, repeat=args.repeat, clients=args.clients,
                                      http_seconds=args.http_seconds, workdir=args.workdir, chunk_rows=args.chunk_rows,
                                      catalog=args.catalog)
        out.print(scenario.table())
        http_table = scenario.http_table()
        if http_table is not None:
            out.print(http_table)
        out.print(f"lake built in {scenario.build_seconds:.1f} s; peak RSS MB: {scenario.peak_rss_mb}")
        out.print(targets_table("targets (issue 8, scenario 3)", scenario.targets))
        doc["results"].append(scenario.to_json())
    if args.json_out is not None:
        text = json.dumps(doc, indent=2, ensure_ascii=False)
        if str(args.json_out) == "-":
            sys.stdout.write(text + "\n")
        else:
            args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
