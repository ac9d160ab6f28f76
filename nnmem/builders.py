"""Which builder makes a scenario's step: the transformer's, a parameter count's or a
CNN's. :func:`nnmem.estimate.estimate` and :mod:`nnmem.timeline` both take the phases
from it."""

from __future__ import annotations

from collections.abc import Callable

from nnmem.models import generic
from nnmem.models.architecture import Transformer
from nnmem.models.step import Built
from nnmem.scenario import GenericModel, Scenario


def builder(scenario: Scenario) -> Callable[[Scenario], Built]:
    """The builder for the scenario's kind of model."""
    if isinstance(scenario.model, GenericModel):
        return generic.build
    if isinstance(scenario.model, Transformer):
        # Imported with the first transformer: the page's first answer, for a parameter
        # count, does without the transformer's tables and assembly, and Python compiles
        # them only when a preset or a config asks for them.
        from nnmem.models import transformer

        return transformer.build
    # A CNN's modules are imported with the first CNN: the page's first bundle leaves
    # them out (see build.py's LATER), as most visits never ask for one.
    from nnmem.models.cnn import build as cnn_build

    return cnn_build.build
