"""Voice services: audio in and out through PyAV (``audio``), synthetic test tones (``tones``), and the chain
of speech recognizers (``recognizers``).

May import: ``bot.wechat`` (WeChat's recognition API), ``bot.store``, ``bot.ops``, ``bot.config``.
"""
