"""Exchange DAG for jiangsu: schedule and datasets live in adapters/jiangsu/province.yaml."""

from exchange.airflow.factory import province_dag

dag = province_dag("jiangsu")
