"""TempFlex-2M style data synthesis (paper section 3.3, appendix A.2, figure 6): videos to captions and QA pairs.

Data flow: ``manifest`` (videos and metadata) -> ``prompt`` (3x3 grids at 1 fps + the figure-6 prompt) ->
``client`` (any OpenAI-compatible server, with retries) -> ``schema`` (strict validation, one repair) ->
``store`` (crash-safe JSONL shards) -> ``export`` (LLaVA training records). ``pipeline`` runs it concurrently,
``engines`` in this process or on Ray (``ray_engine``); ``sharding`` splits a manifest across machines and ``merge``
joins their folders. Nothing is imported eagerly: ``openai`` and PyAV load only when a run starts.
"""
