"""The only Airflow-aware code of the hub."""
