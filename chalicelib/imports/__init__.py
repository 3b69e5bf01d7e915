"""Imports: what a clinic already has, turned into visits, service lines and ledger entries.

Readers (no storage): :mod:`~chalicelib.imports.x12` (a tolerant streaming X12 tokenizer and
envelope checks), :mod:`~chalicelib.imports.x835` (remittances), :mod:`~chalicelib.imports.x837`
(claims), :mod:`~chalicelib.imports.fhir` (FHIR R4 resources and bundles) and
:mod:`~chalicelib.imports.csv_roster` (guarantor/patient rosters). Writes:
:mod:`~chalicelib.imports.services` (``import_file``), with :mod:`~chalicelib.imports.people`
(guarantors and patients found or created by external id) and
:mod:`~chalicelib.imports.posting` (one ledger entry per claim). Reads:
:mod:`~chalicelib.imports.selectors`. :mod:`~chalicelib.imports.generator` writes realistic
837/835 pairs for the demo and the benchmarks.

A layer above accounts and ledger (DESIGN.md): imports core, store, tenants, ledger, accounts.
"""
