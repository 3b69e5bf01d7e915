"""Accounts: guarantors, patients, visits and service lines, statements, and their balances."""
