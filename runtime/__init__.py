"""What runs on the device: the artifact format and its loader, and the inference session."""

from gearshift.runtime.artifact import Artifact, open_artifact, write_artifact
from gearshift.runtime.session import Session, aligned_empty

__all__ = ["Artifact", "Session", "aligned_empty", "open_artifact", "write_artifact"]
