"""Operations: the per-message trace and its one ``bot.message`` log line (``trace``), log handlers with secret
redaction (``logs``) and Prometheus counters (``metrics``).

The base layer, next to ``bot.config``: may import only ``bot.config`` (and the standard library and
prometheus-client); everything else may import it.
"""
