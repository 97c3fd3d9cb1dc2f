"""Fine-tune hub modules in a pipeline and export the result as a new hub module."""
