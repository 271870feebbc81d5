"""The DuckLake lake: attach, commit a batch as one snapshot, list a snapshot's files."""
