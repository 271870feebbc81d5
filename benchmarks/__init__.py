"""Performance harness for the exchange hub (issue 8).

Each scenario is one command (``python -m benchmarks <scenario> ...``). It generates its data with
:mod:`exchange.synthetic`, runs the baselines and ours in the same run, each contender in a fresh
subprocess (so peak RSS is per contender), and prints times, ratios, peak RSS and the issue's targets.
Peer tools (dlt) come from the optional ``bench`` extra; nothing here is imported by the hub.
"""
