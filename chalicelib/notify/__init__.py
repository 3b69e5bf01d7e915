"""Notifications: the outbox, channels (SES, SNS, console), templates, schedules and rules
(PRODUCT.md §8, SECURITY.md R40-R44, SERVERLESS.md §2.5). Layer above links; below payments."""
