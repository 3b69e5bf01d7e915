"""Processor adapters: ``base`` (the interface), ``sandbox`` (default, no network), ``stripe``
(the official SDK, Stripe Connect; the only module importing ``stripe``) and ``registry``."""
