"""Grid-side protocol adapters (OpenADR, OSCP) belong here, one module or package per protocol.

Each adapter only translates: a protocol's demand-response signal becomes the core's own event
model (``optimizer.core.model.CurtailmentEvent`` or ``CapacityLimit`` on a node, with id and
modification number), submitted through the service like a ``GridOperator`` call. No protocol
logic reaches the planner or the core; ``tests/test_layering.py`` keeps adapters from importing
one another.
"""
