"""The two dialects of the Realtime protocol, translated in this one package.

The state machine speaks one vocabulary: GA event names and neutral records
(:class:`EngineSessionConfig`, items, :class:`ResponseRecord`). An :class:`EngineDialect`
parses the client's ``session.update`` and items into those records, renders them back in
its own shape, and renames or trims outgoing events (:meth:`EngineDialect.outgoing`).

GA is ``gpt-realtime`` on OpenAI and Azure's ``/openai/v1`` endpoint; beta is the older
``OpenAI-Beta: realtime=v1`` shape that Azure preview api-versions still speak. One module
per dialect (`ga`, `beta`); `base` holds the interface and what the two spell alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.engine.dialect.base import DialectName, EngineDialect
from bridge.engine.dialect.beta import BetaDialect
from bridge.engine.dialect.ga import GaDialect

__all__ = ["DIALECTS", "BetaDialect", "DialectName", "EngineDialect", "GaDialect", "get_dialect"]


DIALECTS: Mapping[DialectName, EngineDialect] = {"ga": GaDialect(), "beta": BetaDialect()}


def get_dialect(name: DialectName | EngineDialect) -> EngineDialect:
    """A dialect by name (``"ga"`` or ``"beta"``), or the instance itself."""
    if isinstance(name, EngineDialect):
        return name
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; expected 'ga' or 'beta'") from None
