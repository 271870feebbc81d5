"""Nightly audit DAG: full verify of provenance, manifests, lake files and extracts."""

from exchange.airflow.operations import audit_dag

dag = audit_dag()
