"""The node side: local datasets, the Flower ClientApp and ``mmbind-client``."""
