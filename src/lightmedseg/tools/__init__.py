"""Tools around the pipeline: the profiler (``lightmedseg profile``) and the demo (``lightmedseg demo``)."""
