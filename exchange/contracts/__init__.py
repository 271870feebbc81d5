"""Data contracts: load ODCS v3 YAML, compile to a Great Expectations suite, validate, split the batch.

Modules (import the one you need; ``validate`` pulls in Great Expectations, which takes seconds to import,
while ``load`` and ``model`` do not):

* ``model``        - Contract, FieldSpec, Rule and the contract errors
* ``load``         - ``load_contract(dataset)``: read and check ``contracts/<dataset>.odcs.yaml``
* ``rules``        - one vectorized predicate per rule type, the single definition of every check
* ``expectations`` - custom GX expectations (checksums, region, first occurrence) backed by ``rules``
* ``reference``    - run parameters that read the lake (``lake:``, ``lake_absent:``, ``lake_stale:``) and the
                     ``LakeReference`` protocol they are resolved through (DuckLake: ``exchange.lake.reference``)
* ``suite``        - contract -> GX suite, and the per-process GX context
* ``validate``     - ``validate(table, contract, province=, batch_id=, today=, lake=)`` -> accepted / quarantined /
                     warnings
"""
