"""The Beam face of beam-hub: ApplyHubModule (a transform) and HubModelHandler (for RunInference)."""

from beam_hub.beam.apply import ApplyHubModule, FailedElement
from beam_hub.beam.handler import HubModelHandler

__all__ = ["ApplyHubModule", "FailedElement", "HubModelHandler"]
