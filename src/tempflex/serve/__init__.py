"""``tempflex serve``: the model behind an OpenAI-compatible chat-completions API and a web page.

``create_app(ServeSettings(...))`` loads the model and returns the FastAPI app (``tempflex.serve.app``);
``Engine`` queues and batches requests to it (``tempflex.serve.engine``). FastAPI is imported only when an app is
built. See docs/serve.md.
"""

from tempflex.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(settings: ServeSettings, engine=None):
    """The FastAPI app (see ``tempflex.serve.app.create_app``)."""
    from tempflex.serve.app import create_app as build

    return build(settings, engine)
