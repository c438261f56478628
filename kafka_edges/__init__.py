"""kafka_edges package."""
