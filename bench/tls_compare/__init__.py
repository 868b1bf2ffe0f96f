"""Side-by-side TLS benchmark of certgate, nginx and HAProxy (see bench/README.md)."""
