"""Reference code tables shared by the generator, the adapters and the contracts."""
