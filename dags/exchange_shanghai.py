"""Exchange DAG for shanghai: schedule and datasets live in adapters/shanghai/province.yaml."""

from exchange.airflow.factory import province_dag

dag = province_dag("shanghai")
