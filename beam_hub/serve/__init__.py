"""`beam-hub serve`: host modules over HTTP with the TF Hub protocol."""
