"""Anhui: daily XML exports (Chinese element names) checked against the XSDs beside this file."""
