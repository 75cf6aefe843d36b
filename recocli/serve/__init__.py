"""`reco serve`: the loop's front door over HTTP (docs/serve.md)."""
