"""What runs on the device: the artifact format and its loader, and the inference session."""

from gearshift.runtime.artifact import Artifact, open_artifact, write_artifact
from gearshift.runtime.session import Session

__all__ = ["Artifact", "Session", "open_artifact", "write_artifact"]
