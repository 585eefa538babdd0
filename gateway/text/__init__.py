"""Text fidelity: read legacy bytes back into exactly what the author wrote."""
