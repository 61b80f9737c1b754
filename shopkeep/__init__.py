"""shopkeep: the order and payment engine of a small online shop, in one Python process.

Each order is an actor with a mailbox and SQLite is the only store. The package holds the actor
runtime (``runtime``), the SQLite store (``store``), the shop's actors (``actors``) and the HTTP
adapter (``http``); ``cli`` is the ``shopkeep`` command (``main.py`` runs it in a checkout).
"""

__version__ = "0.1.0"
