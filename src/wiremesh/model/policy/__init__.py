"""The access policy of a mesh (pure): who may connect to whom, on which ports.

- :mod:`.ports` port specs and probes; :mod:`.rules` the ``[policy]`` as values;
- :mod:`.presets` rules for common stacks (k3s); :mod:`.resolve` references as sets of nodes;
- :mod:`.evaluate` the evaluator and the policy tests; :mod:`.check` cross-checks;
- :mod:`.compile` one nftables table per host (:mod:`wiremesh.model.nft`).

The guide is docs/policy.md.
"""
