"""``convnet serve``: a web page to draw on and a JSON API, over a loaded model.

Built on Starlette (served by uvicorn); install with ``pip install convnet[serve]``.
See :func:`convnet.serve.app.create_app` for the API.
"""

from convnet.serve.app import MAX_BYTES, create_app

__all__ = ["MAX_BYTES", "create_app"]
