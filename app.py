"""The Chalice application: wiring only (DESIGN.md). Routes and handlers live in blueprints
under ``chalicelib.web`` and ``chalicelib.api``; each calls one service or selector.

Importing this module makes no network call and creates only the DynamoDB client (B3).
"""

from chalice import Chalice

from chalicelib.api.health import health
from chalicelib.api.payments import payments_api
from chalicelib.api.sandbox_processor import sandbox_pages
from chalicelib.api.statements import statements_api
from chalicelib.jobs.imports import imports_jobs
from chalicelib.jobs.notify import notify_events
from chalicelib.jobs.payments import payment_jobs
from chalicelib.jobs.statements import statements_jobs
from chalicelib.store import db
from chalicelib.web.portal import portal
from chalicelib.web.profile import profile_pages
from chalicelib.web.static_files import static

app = Chalice(app_name="frontdesk")
app.api.binary_types.append("application/pdf")  # a statement's PDF from a local folder (web.portal)
app.register_blueprint(health)
app.register_blueprint(imports_jobs)
app.register_blueprint(statements_jobs)
app.register_blueprint(statements_api)
app.register_blueprint(notify_events)
app.register_blueprint(payments_api)
app.register_blueprint(sandbox_pages)
app.register_blueprint(payment_jobs)
app.register_blueprint(portal)
app.register_blueprint(profile_pages)
app.register_blueprint(static)
db.bind()
