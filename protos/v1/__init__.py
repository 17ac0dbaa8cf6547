"""Version 1 of the BindingService gRPC contract (generated code; see ``protos/generate.py``)."""
