"""The business rules more than one service uses, pure (no Kafka, no HTTP, no database session): attribution
matching (the gateway's click records and the attribution consumer), SKAN postbacks, conversion schemas and
their decoding (the gateway's intake, the SKAN consumer, the fanout, the admin service), revenue bounds (the
gateway and the admin service). A service imports these, never another service's internals."""
