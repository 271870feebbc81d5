"""Exchange DAG for anhui: schedule and datasets live in adapters/anhui/province.yaml."""

from exchange.airflow.factory import province_dag

dag = province_dag("anhui")
