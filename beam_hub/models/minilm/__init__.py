"""The built-in sentence-embedding module ``builtin://all-MiniLM-L6-v2``."""
