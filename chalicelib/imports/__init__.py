"""Imports: what a clinic already has, turned into visits, service lines and ledger entries.

Readers (no storage): :mod:`~chalicelib.imports.x12` (a tolerant streaming X12 tokenizer with
envelope checks), :mod:`~chalicelib.imports.x835` (remittances), :mod:`~chalicelib.imports.x837`
(claims), :mod:`~chalicelib.imports.fhir` (FHIR R4 resources and bundles) and
:mod:`~chalicelib.imports.csv_roster` (guarantor/patient rosters), producing the dataclasses of
:mod:`~chalicelib.imports.model`; :mod:`~chalicelib.imports.files` detects a file's format,
runs the validation pass and shapes the per-file result; :mod:`~chalicelib.imports.errors`
holds the typed rejection and the warnings.

Writes: :mod:`~chalicelib.imports.services` (``import_file``, ``import_resume``, ``import_check``),
with :mod:`~chalicelib.imports.people` (guarantors, patients, providers found or created by
external id) and :mod:`~chalicelib.imports.posting` (one ledger entry per claim). Reads:
:mod:`~chalicelib.imports.selectors`. :mod:`~chalicelib.imports.generator` writes realistic
837/835 pairs for the demo, the tests and the benchmarks.

A layer above accounts and ledger (DESIGN.md): imports core, store, tenants, ledger, accounts.
"""
