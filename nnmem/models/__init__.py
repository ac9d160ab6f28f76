"""The models the estimator knows: what each holds and saves, phase by phase.

:mod:`.architecture` reads a transformer's ``config.json`` and counts its parameters;
:mod:`.tensors` sizes tensors row by row; :mod:`.transformer`, :mod:`.generic` and
:mod:`.cnn` build the phases of a step; :mod:`.step` holds what those builders share.
"""
