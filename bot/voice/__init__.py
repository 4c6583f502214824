"""Voice services: audio in and out through PyAV (``audio``), synthetic test tones (``tones``), the chain
of speech recognizers (``recognizers``), the chain of speech synthesizers (``synthesizers``) and their audio as
WeChat voice parts (``speech``); ``chain`` is what both chains share.

May import: ``bot.wechat`` (WeChat's recognition API), ``bot.store``, ``bot.ops``, ``bot.config``.
"""
