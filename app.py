"""The Chalice application: wiring only (DESIGN.md). Routes and handlers live in blueprints
under ``chalicelib.web`` and ``chalicelib.api``; each calls one service or selector.

Importing this module makes no network call and creates only the DynamoDB client (B3).
"""

from chalice import Chalice

from chalicelib.api.health import health
from chalicelib.store import db
from chalicelib.web.portal import portal
from chalicelib.web.static_files import static

app = Chalice(app_name="frontdesk")
app.register_blueprint(health)
app.register_blueprint(portal)
app.register_blueprint(static)
db.bind()
