"""A lab's own ops for orch (see README.md): attention by `module:attribute`, RMSNorm and a
row-wise top-k by the `orch.ops` entry points."""
