"""Hardware-aware evolutionary search of a trained supernet under latency/FLOPs/params budgets."""

from nastools.search.budget import Budget, parse_budgets, parse_latency
from nastools.search.evolution import Candidate, EvolutionSearch, SearchConfig, best_under, pareto_front, random_search

__all__ = [
    "Budget",
    "Candidate",
    "EvolutionSearch",
    "SearchConfig",
    "best_under",
    "pareto_front",
    "parse_budgets",
    "parse_latency",
    "random_search",
]
