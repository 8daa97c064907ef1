"""Networks as plugins: what a network module declares (spec.py) and the registry of them (registry.py)."""
