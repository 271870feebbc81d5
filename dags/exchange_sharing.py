"""Daily sharing DAG: overdue requests escalated and alerted, ended periods closed (issue 19)."""

from exchange.airflow.sharing import sharing_dag

dag = sharing_dag()
