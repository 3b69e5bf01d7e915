"""Payments: attempts (three phases), receipts, reference batches, refunds, stored cards,
split payments and the processors behind them (DESIGN.md "Rules that keep money right" 3-5)."""
