"""The HTTP front door (FastAPI): `uvicorn starter.http:app`.

app.py builds the app; errors.py the one error shape; deps.py the dependencies routes take;
schemas.py the request and response bodies; routes/ one module per resource.
"""

from starter.http.app import MAX_BODY_BYTES, create_app
from tidings.tracking import make_open_pixel, make_tracking_link

app = create_app()

__all__ = ["MAX_BODY_BYTES", "app", "create_app", "make_open_pixel", "make_tracking_link"]
