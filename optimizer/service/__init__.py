"""The gRPC service: servicers, the planner that keeps each site's plan current, the mapping of
errors to gRPC status codes, the SQLite store and the server process."""
