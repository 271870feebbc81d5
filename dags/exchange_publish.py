"""Publishing DAG: refreshes standing extracts whenever a lake table (an Airflow Asset) changes."""

from exchange.airflow.operations import publish_dag

dag = publish_dag()
