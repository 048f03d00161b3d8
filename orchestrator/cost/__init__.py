"""The cost model: predicted time (and dollars, joules) of one job on one placement."""
