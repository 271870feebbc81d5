"""Data contracts: load ODCS v3 YAML, compile to a Great Expectations suite, validate, split the batch.

Modules (import the one you need; ``validate`` pulls in Great Expectations, which takes seconds to import,
while ``load`` and ``model`` do not):

* ``model``        - Contract, FieldSpec, Rule and the contract errors
* ``load``         - ``load_contract(dataset)``: read and check ``contracts/<dataset>.odcs.yaml``
* ``rules``        - one vectorized predicate per rule type, the single definition of every check
* ``expectations`` - custom GX expectations (checksums, region, first occurrence) backed by ``rules``
* ``suite``        - contract -> GX suite, and the per-process GX context
* ``validate``     - ``validate(table, contract, province=, batch_id=)`` -> accepted / quarantined / warnings
"""
