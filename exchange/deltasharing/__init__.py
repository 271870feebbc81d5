"""Delta Sharing for departments: the open protocol's shares, tables, versions and signed file URLs.

protocol.py is pure (the protocol's documents, share and table names from grants, lake snapshots as table
versions); urls.py signs and checks the short-lived file URLs; files.py materialises a grant's masked,
row-filtered view at one snapshot as Parquet; changes.py its change data feed, from DuckLake's; profile.py
writes a department's profile file. The HTTP edge is exchange/api/deltasharing.py.
"""
