"""A conversation history service: an example of a wxkf extension.

It binds queues of its own to ``kf.events`` (what users said and did, the router's
decisions, the sender's outcomes) and to ``kf.commands`` (what wxkf was asked to say), keeps
every message once in SQLite, and serves ``GET /conversations/{openid}``. It imports only
``libs.common`` from wxkf; ``docs/extensions.md`` explains the same contract for other
languages. Run it with ``python -m examples.extension``.
"""
