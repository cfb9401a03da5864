"""Customer databases: dialects, drivers, pools, timeouts and result shapes.

This package knows nothing about users: it is handed a resolved
:class:`ConnectionSpec` and SQL, and answers with a :class:`QueryResult`.
"""

from pointsman.engines.registry import EngineRegistry
from pointsman.engines.spec import Column, ConnectionSpec, QueryResult

__all__ = ["Column", "ConnectionSpec", "EngineRegistry", "QueryResult"]
