"""The Kafka transport, knowing nothing of the graph: the embedded broker, client configuration,
topic administration, the wire codec and dead letters, a confirmed publisher and a topic reader."""
