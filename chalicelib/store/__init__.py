"""Storage: the single DynamoDB table, its keys, PynamoDB models and transaction helpers.

Only services (``<package>.services``) write through these models; selectors read them and
return frozen dataclasses. ``schema`` is the one description of the table that ``infra/`` and
the tests both build from.
"""
