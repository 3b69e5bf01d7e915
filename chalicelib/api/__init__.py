"""PRESENTATION: the JSON API (health now; practice-management endpoints and webhooks later)."""
