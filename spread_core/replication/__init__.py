"""Node-to-node replication: the log a node serves to a peer, applying a peer's entries, the
symmetric session both ends of a link run, and the connector that keeps outgoing links up.
See docs/replication.md for the protocol."""
