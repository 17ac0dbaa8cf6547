"""The coordinator: the ServerApp phase workflow, aggregation, binding stores and the CLI."""
