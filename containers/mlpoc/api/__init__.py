"""The HTTP API: jobs, models, stored and realtime predictions, and the annotation loop."""
