"""The hash-chained provenance log, batch manifests and their verification."""
