"""Provenance action names are spelled only in the vocabulary (exchange/provenance/events.py).

Elsewhere code writes and reads actions through `events.Kind` and the event classes. The scan looks for a
kind's name as a string literal where it would be used as an action: an `action=`/`attempt=` argument, the
attempt given to `record_denial`, a comparison or `startswith` on an `.action`, an `"action":` key, or a
module constant. Some constants share a kind's spelling for another meaning and are named below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from exchange.provenance.events import Kind

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY_MODULE = Path("exchange/provenance/events.py")
NAMES = {k.value for k in Kind}
# (file, constant): same spelling, different meaning.
OTHER_MEANINGS = {
    ("exchange/lake/commit.py", "QUARANTINE"),  # the lake table of quarantined records
    ("exchange/airflow/errors.py", "STAGES"),  # the Airflow task ids of a province DAG
    ("exchange/airflow/display.py", "STAGE_NAMES"),  # the same stages' Chinese names in the Airflow UI
    ("exchange/sharing/service.py", "DIRECT_METHODS"),  # sharing methods of the Regulations (下载 download)
}


def _mentions_action(node: ast.AST) -> bool:
    return any((isinstance(n, ast.Attribute) and n.attr == "action") or (isinstance(n, ast.Name) and n.id == "action")
               for n in ast.walk(node))


def _literals(node: ast.AST | None) -> list[ast.Constant]:
    if node is None:
        return []
    return [n for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in NAMES]


def action_literals(source: str, path: str = "<snippet>") -> list[str]:
    """`path:line 'name'` for every kind name used as an action literal in `source`."""
    found: list[ast.Constant] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            found += [c for kw in node.keywords if kw.arg in ("action", "attempt") for c in _literals(kw.value)]
            if callee == "record_denial" and len(node.args) > 2:
                found += _literals(node.args[2])
            if callee == "startswith" and _mentions_action(node.func):
                found += [c for a in node.args for c in _literals(a)]
        elif isinstance(node, ast.Compare) and _mentions_action(node):
            found += [c for part in (node.left, *node.comparators) for c in _literals(part)]
        elif isinstance(node, ast.Dict):
            found += [c for k, v in zip(node.keys, node.values, strict=True)
                      if isinstance(k, ast.Constant) and k.value == "action" for c in _literals(v)]
    for node in tree.body:  # module constants: ACTIONS = ("grant", ...), DENIED = "access_denied"
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
            if names and not any((path, n) in OTHER_MEANINGS for n in names):
                value = node.value  # a mapping's keys name other things (DOCUMENTS = {"grant": Grant})
                found += [c for v in (value.values if isinstance(value, ast.Dict) else [value]) for c in _literals(v)]
    return sorted({f"{path}:{c.lineno} {c.value!r}" for c in found})


@pytest.mark.parametrize(("snippet", "hits"), [
    ('log.append(signer, actor="hub", action="commit", subject=b)', 1),
    ('if entry.action == "pull": pass', 1),
    ('if e.action in ("grant", "extract", "nonsense"): pass', 2),
    ('ok = entry.action.startswith(("query", "key_"))', 1),
    ('record_denial(hub, dept, "extract", "query", reason)', 1),  # the attempt, not the subject
    ('DENIED = "access_denied"', 1),
    ('DOCUMENTS = {"grant": Grant, "x": "commit"}', 1),
    ('body = {"action": "checkpoint", "subject": "provenance"}', 1),
    # not actions: a subject, a CLI command name, a dict key, a plain word
    ('record_denial(hub, dept, Kind.QUERY, "query", reason)', 0),
    ('@app.command("list")\ndef f(): pass', 0),
    ('digests = {"archive": d}', 0),
    ('kind = "quarantine" if x else "insert"', 0),
])
def test_the_scan_finds_action_literals_and_only_them(snippet: str, hits: int) -> None:
    assert len(action_literals(snippet)) == hits, action_literals(snippet)


def test_action_names_are_spelled_only_in_the_vocabulary() -> None:
    found: list[str] = []
    for folder in ("exchange", "adapters", "dags"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel != VOCABULARY_MODULE:
                found += action_literals(path.read_text(encoding="utf-8"), rel.as_posix())
    assert found == [], "use exchange.provenance.events (Kind, the event classes) instead of: " + ", ".join(found)
