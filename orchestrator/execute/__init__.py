"""Running one job where it landed: the harness (one worker, `harness.execute`), a gang's rank
(several workers joined by `torch.distributed`, `gang.rank_main`) and the sentinel that times the
machine's speed beside them. The ops they run are the catalog's (`orchestrator.ops`)."""
