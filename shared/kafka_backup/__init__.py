"""kafka-backup engine."""
