"""The HTTP adapter: an aiohttp app, built by one factory, over the shop's Python API.

Always import it as ``shopkeep.http``: run as a top-level ``http`` it would shadow the standard
library module that aiohttp imports.
"""
