"""Plugin modules used by the registry tests (loaded through real ``importlib.metadata.EntryPoint`` objects)."""
