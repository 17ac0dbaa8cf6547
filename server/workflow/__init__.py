"""The six phases of one federated MMBind run, driven over a Flower ``Grid``.

1. manifest – nodes report modalities, counts, labels and channel moments;
2. pretrain – one autoencoder per modality, FedAvg over that modality's holders;
3. binding – shared-modality embeddings uploaded and bound across nodes;
4. partner features – partners embed their private modality for bound samples,
   routed by the coordinator;
5. align – weighted multi-view contrastive rounds, aggregated per modality with
   weights sample count x binding confidence;
6. fine-tune on the labelled paired node(s), evaluate on the test node(s).

Every method of :mod:`mmbind.methods` runs through the same phases, in lockstep:
one message per node and round carries every method's model (``<method>.model``),
so comparing seven methods costs the rounds of one, not seven times as many. Each
method that pretrains starts from the same federated autoencoders (one pretraining
per run).

The package along its seams:

============== ===============================================================
``channel``    the node channel, the only code that touches Flower's Grid/Message
``phases``     phases 1, 2, 5, 6 as configure/aggregate functions (no transport)
``binding``    phase 3: embedding requests and the binding's report
``routing``    phase 4: partner features, and partner gradients back
``joining``    late nodes: checked, bound incrementally, aligned from the next round
``roster``     the run's nodes and dropouts
``rounds``     each phase's rounds: configure, send, decode, aggregate
``schedule``   the run's checkpointed steps (a typed :class:`Step`)
``checkpoint`` fencing, checkpoint save and restore
``result``     what a run measured (:class:`RunResult`), the phase clock
``run``        :class:`Workflow`: the rounds on the run's schedule
============== ===============================================================
"""

from __future__ import annotations

from mmbind.server.workflow.binding import BindingServiceAPI
from mmbind.server.workflow.channel import NODE_POLL_SECONDS, POLL_SECONDS, NodeChannel
from mmbind.server.workflow.checkpoint import PRETRAINED
from mmbind.server.workflow.phases import Routed, State
from mmbind.server.workflow.result import RunResult
from mmbind.server.workflow.run import Progress, Workflow
from mmbind.server.workflow.schedule import Step

__all__ = [
    "NODE_POLL_SECONDS",
    "POLL_SECONDS",
    "PRETRAINED",
    "BindingServiceAPI",
    "NodeChannel",
    "Progress",
    "Routed",
    "RunResult",
    "State",
    "Step",
    "Workflow",
]
