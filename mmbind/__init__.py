"""mmbind: federated MMBind binding of heterogeneous multimodal IoT data.

The package maps the repository's top-level folders into one namespace:
``mmbind.binding`` (the method, pure), ``mmbind.client`` (the node),
``mmbind.server`` (the coordinator), ``mmbind.lab`` (simulations, experiments, reports and
the centralised baseline, on top of the others) and ``mmbind.protos`` (the gRPC contract).

Importing the package pins torch's CPU kernels to one instruction set
(:mod:`mmbind.numerics`), so that the same seed is meant to give the same figures on any
x86-64 machine with AVX2.
"""

from mmbind.numerics import pin_cpu_kernels

pin_cpu_kernels()

__version__ = "0.1.0"
