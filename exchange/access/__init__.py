"""Departments, grants, masking and extracts: access is enforced by the hub, not trusted to the reader."""
