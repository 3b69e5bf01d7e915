"""Processor adapters: ``base`` (the interface), ``sandbox`` (default, no network), ``stripe``
(the official SDK, Stripe Connect; the only module importing ``stripe``) and ``registry``."""

#: Where the sandbox's hosted pages live (they stand for a processor's domain): the sandbox
#: makes their URLs and ``chalicelib.api.sandbox_processor`` serves them.
SANDBOX_PAGE_PREFIX = "/sandbox-processor"
