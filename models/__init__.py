"""Scoring models: training on the bundled datasets (:mod:`models.train`), a versioned registry on
disk with sha256-checked artifacts (:mod:`models.registry`) and the `monitor models` commands
(:mod:`models.cli`)."""
