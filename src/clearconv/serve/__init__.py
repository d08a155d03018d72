"""``clearconv serve``: a web page to draw on and a JSON API, over a loaded model.

Built on Starlette (served by uvicorn): the ``serve`` extra.
See :func:`clearconv.serve.app.create_app` for the API.
"""

from clearconv.serve.app import MAX_BYTES, create_app

__all__ = ["MAX_BYTES", "create_app"]
