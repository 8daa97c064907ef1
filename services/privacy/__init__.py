"""Personal data over time: erasure on request (erasure.py) and retention windows (retention.py)."""
