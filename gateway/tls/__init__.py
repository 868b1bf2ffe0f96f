"""TLS termination: per-chain contexts built in memory, SNI selection, alert delivery."""
