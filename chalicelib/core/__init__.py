"""Core: money, clock, ids, errors and configuration. Imports nothing else from Frontdesk."""
