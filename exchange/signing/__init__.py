"""Keys, signatures and canonical JSON."""
