"""Airflow plugin of the exchange hub (AIRFLOW__CORE__PLUGINS_FOLDER points here): see exchange/airflow/ui_plugin.py."""

from exchange.airflow.ui_plugin import ExchangeUiPlugin

__all__ = ["ExchangeUiPlugin"]
