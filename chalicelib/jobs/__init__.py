"""PRESENTATION for events: ``@schedule``, ``@on_sqs_message`` and ``@on_s3_event`` handlers in
blueprints. Each handler parses its event (ids only, never PHI) and calls one service; each is
safe to run twice (DESIGN.md rule 5)."""
