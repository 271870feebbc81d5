"""Exchange DAG for zhejiang: schedule and datasets live in adapters/zhejiang/province.yaml."""

from exchange.airflow.factory import province_dag

dag = province_dag("zhejiang")
