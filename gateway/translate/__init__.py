"""Translation between the legacy and trust formats: MIME, addresses, pipelines, traces."""
