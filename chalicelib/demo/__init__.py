"""The embedded-default demo: a generated clinic run through the real services."""
