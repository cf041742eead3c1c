"""Getting tickets to help desks: the outbox worker and the help-desk connectors."""
