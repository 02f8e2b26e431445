"""Bitrix24 stand-in: OAuth server, portals (REST, portal page, frame helpers), launch and lifecycle events."""
