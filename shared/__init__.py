"""What several services share: settings, the scene format, metadata database, blob store, queue."""
