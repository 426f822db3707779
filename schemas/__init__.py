"""The Avro contracts (``*.avsc``), installed as package data of ``ledgerstream.schemas`` and read
through ``importlib.resources`` (``ledgerstream.avro``)."""
