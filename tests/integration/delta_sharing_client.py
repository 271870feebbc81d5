"""Run by the official delta-sharing client's own Python (a separate venv: `make delta-sharing-client`), never
imported by pytest. One command per call, its answer as one JSON line on stdout.

    python delta_sharing_client.py PROFILE list
    python delta_sharing_client.py PROFILE load TABLE OUT.parquet [VERSION|-] [TIMESTAMP]
    python delta_sharing_client.py PROFILE files TABLE          (the query's file URLs, via the client's REST client)
    python delta_sharing_client.py PROFILE version TABLE [STARTING_TIMESTAMP]
    python delta_sharing_client.py PROFILE changes TABLE OUT.parquet STARTING_VERSION [ENDING_VERSION]

A failure prints {"error": <exception class>, "status": <HTTP status or null>, "message": ...} and exits 0, so
the test reads what the department would see.
"""

import json
import sys

import delta_sharing
from delta_sharing.protocol import DeltaSharingProfile, Table
from delta_sharing.rest_client import DataSharingRestClient


def main(profile: str, command: str, *args: str) -> dict:
    client = delta_sharing.SharingClient(profile)
    if command == "list":
        shares = client.list_shares()
        return {"shares": [s.name for s in shares],
                "schemas": [s.name for share in shares for s in client.list_schemas(share)],
                "tables": [f"{t.share}.{t.schema}.{t.name}" for t in client.list_all_tables()]}
    url = f"{profile}#{args[0]}"
    if command == "load":
        version = None if len(args) < 3 or args[2] == "-" else int(args[2])
        timestamp = args[3] if len(args) > 3 else None
        frame = delta_sharing.load_as_pandas(url, version=version, timestamp=timestamp)
        frame.to_parquet(args[1], index=False)
        return {"rows": len(frame), "columns": list(frame.columns)}
    if command == "files":
        share, schema, name = args[0].split(".")
        rest = DataSharingRestClient(DeltaSharingProfile.read_from_file(profile))
        response = rest.list_files_in_table(Table(name=name, share=share, schema=schema))
        return {"version": response.delta_table_version, "urls": [f.url for f in response.add_files],
                "schema": json.loads(response.metadata.schema_string)}
    if command == "version":
        return {"version": delta_sharing.get_table_version(url, starting_timestamp=args[1] if len(args) > 1 else None)}
    if command == "changes":
        ending = int(args[3]) if len(args) > 3 else None
        frame = delta_sharing.load_table_changes_as_pandas(url, starting_version=int(args[2]), ending_version=ending)
        frame.to_parquet(args[1], index=False)
        return {"rows": len(frame), "columns": list(frame.columns)}
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    try:
        answer = main(*sys.argv[1:])
    except Exception as exc:  # the department's view of a refusal
        response = getattr(exc, "response", None)
        answer = {"error": type(exc).__name__, "status": getattr(response, "status_code", None),
                  "message": str(exc), "body": getattr(response, "text", None)}
    print(json.dumps(answer, default=str))
