"""The admin listener: health, metrics, and the admin API."""
