"""An example handler package for a worker image (see ../Dockerfile)."""
