"""Shanghai: a REST JSON API with camelCase English fields and numeric status codes ("01", "02", ...)."""
