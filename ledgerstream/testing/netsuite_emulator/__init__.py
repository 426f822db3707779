"""An emulator of NetSuite's SuiteTalk REST record API, for tests and the demo.

NetSuite cannot be reached from development machines, so the pipeline is proven against this
stand-in over HTTP. It keeps the real URL shape, authentication and error format; see
``server.py`` for what it checks and ``store.py`` for how records persist.
"""
