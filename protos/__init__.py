"""The gRPC contract of the BindingService and its generated code."""
