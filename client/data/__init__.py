"""Local datasets of a node: UTD-MHAD, the synthetic generator and the role partitioner."""
