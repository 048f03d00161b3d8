"""Discovery (CPU, memory, GPUs) and microbenchmarks of this machine."""
