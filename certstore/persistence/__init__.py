"""I/O for the certificate store: the SQLite database and the master key file."""
