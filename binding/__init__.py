"""The MMBind method, pure and framework-free: tensors and arrays in, tensors and arrays out."""
