"""The pure core: domain model -> validation -> compiled arrays -> allocation -> plan -> check.

Nothing here does I/O or imports an adapter (protobuf, gRPC, SQLite, sockets, OCPP, plotting);
``tests/core/test_layering.py`` walks the imports and fails when something does.
"""
