"""Frontdesk: patient billing, online payment and scheduling portal (AWS Chalice application).

Packages are layered as DESIGN.md says (checked by import-linter), lowest first:
core -> store -> tenants -> ledger -> accounts -> ... -> web/api; ``cli`` and ``demo`` sit on top.
"""
