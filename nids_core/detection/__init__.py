"""Detection: typed evidence from several detectors, summed per host and window into alerts."""
