"""Planning: choose a placement per job and place the batch on the hardware's devices."""
