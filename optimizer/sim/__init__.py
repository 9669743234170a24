"""Simulation: replay of real session data against the strategies, and the reports it writes."""
