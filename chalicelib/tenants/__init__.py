"""Tenants: clinics, groups (portal branding and options), staff users, facilities, providers."""
