"""What the admin API reads and writes in the database, one module per resource (sync; called in threads)."""
