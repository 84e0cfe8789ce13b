"""What every stage uses: errors, crash-safe I/O and locks, paths, registries, the YAML schema engine,
progress bars, device and precision."""
