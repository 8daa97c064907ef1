"""An app's report figures: counted from the raw rows (figures.py), kept per closed UTC day in rollup tables
(rollups.py: read and written there, rolled by roller.py, marked stale by the writers through stale.py), and
combined for a time range by the admin service's report (services/admin/stores/reports.py)."""
