"""Hardware-aware evolutionary search of a trained supernet under latency/FLOPs/params budgets."""

from nastools.search.budget import Budget, parse_budgets, parse_latency
from nastools.search.evolution import Candidate, EvolutionSearch, SearchConfig, best_under, pareto_front, random_search
from nastools.search.latency_cost import LatencyCost, find_table, resolve_table

__all__ = [
    "Budget",
    "Candidate",
    "EvolutionSearch",
    "LatencyCost",
    "SearchConfig",
    "best_under",
    "find_table",
    "pareto_front",
    "parse_budgets",
    "parse_latency",
    "random_search",
    "resolve_table",
]
