"""Ledger: append-only double-entry entries per guarantor, stored balances, reversal, verify."""
