"""Evaluation: rating metrics (:mod:`.rating`), ranking metrics (:mod:`.ranking`) and rank
sweeps (:mod:`.sweeps`), each producing rows of the run's metrics table."""
