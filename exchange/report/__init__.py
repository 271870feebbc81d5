"""Summaries and reports for offices and auditors."""
