"""Ready-to-run beam-hub jobs (`beam-hub embed`, ...)."""
