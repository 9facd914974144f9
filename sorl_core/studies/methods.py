"""SORL against its baselines at equal compute (docs/ALGORITHM.md §9): each method's best (M_inf, N) cell within a
budget of network calls per action, the training seeds' episodes pooled.

Reads sweep.csv rows with a `method` column (`sorl-lab evaluate`, scripts/build_ogbench_assets.py); written into
assets/ogbench/RESULTS.md and BASELINES.md by scripts/build_results_table.py.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from .sweep_schema import best_within_budget, intervals_apart, pool_rows

BUDGETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # calls per action at which methods are compared (ifql: up to 288)


def calls_text(budget: float) -> str:
    return f"≤ {budget:g} call{'s' if budget > 1 else ''}"


def pooled_cells(rows: Iterable[dict]) -> dict[str, list[dict]]:
    """method -> its fixed (M_inf, N, verifier) cells, each pooled over the files (training seeds) that measured it.
    Adaptive rows are left out; a cell keeps `seeds`, how many files measured it."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("adaptive"):
            continue
        key = (r.get("method") or "sorl", r.get("verifier") or "q", int(r["m_inf"]), int(r["n"]))
        groups.setdefault(key, []).append(r)
    cells: dict[str, list[dict]] = {}
    for (method, verifier, m, n), group in groups.items():
        cells.setdefault(method, []).append({**pool_rows(group), "method": method, "verifier": verifier,
                                             "m_inf": m, "n": n})
    return cells


def frontiers(cells: dict[str, list[dict]], budgets: Sequence[float] = BUDGETS) -> dict[str, list[dict | None]]:
    """method -> its best cell within each budget (best_within_budget: ties to fewer calls); None where none fits."""
    return {method: [best_within_budget(mine, b) for b in budgets] for method, mine in cells.items()}


def cell_text(cell: dict | None, with_interval: bool = True) -> str:
    """'84% [77%, 89%] (M_inf = 8, N = 1)' or '-' when no cell fits."""
    if cell is None:
        return "-"
    rate = f"{cell['success_rate']:.0%}"
    if with_interval:
        rate += f" [{cell['success_ci_low']:.0%}, {cell['success_ci_high']:.0%}]"
    return f"{rate} (M_inf = {cell['m_inf']}, N = {cell['n']})"


def against(mine: dict | None, other: dict | None) -> str:
    """How one method's best cell stands against another's at the same budget, in words."""
    if mine is None or other is None:
        return "not comparable (one has no cell this cheap)"
    diff = round(100 * (mine["success_rate"] - other["success_rate"]))
    if not intervals_apart(mine, other):
        return f"{diff:+d} points, intervals overlap: no difference the episodes can show"
    return f"{diff:+d} points, intervals apart: {'ahead' if diff > 0 else 'behind'}"


def budgets_text(budgets: Sequence[float], chosen: Sequence[float]) -> str:
    """Budgets in words, consecutive ones of `budgets` as a range: '1 call', '2-128 calls', '1 and 4-8 calls'."""
    runs: list[list[float]] = []
    for b in chosen:
        if runs and budgets.index(b) == budgets.index(runs[-1][-1]) + 1:
            runs[-1].append(b)
        else:
            runs.append([b])
    parts = [f"{r[0]:g}" if len(r) == 1 else f"{r[0]:g}-{r[-1]:g}" for r in runs]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{text} call{'' if chosen == [1] else 's'}"


def verdict(best: dict[str, list[dict | None]], budgets: Sequence[float] = BUDGETS, subject: str = "sorl") -> list[str]:
    """One line per budget where some method's best cell changes: the subject's best cell against each other method's
    best at that budget; then a line naming the budgets (per action) where the subject is ahead of the best other
    method, behind it, or not told apart from it (95% intervals)."""
    others = [m for m in best if m != subject]
    if subject not in best or not others:
        return []
    lines, tally, before = [], {"ahead": [], "behind": [], "overlap": []}, None
    for i, budget in enumerate(budgets):
        mine = best[subject][i]
        rivals = [(m, best[m][i]) for m in others if best[m][i] is not None]
        if mine is None or not rivals:
            continue
        top = max(rivals, key=lambda mc: (mc[1]["success_rate"], -mc[1]["network_calls"]))[1]
        word = against(mine, top)
        tally["overlap" if "overlap" in word else "ahead" if "ahead" in word else "behind"].append(budget)
        cells = [(c["m_inf"], c["n"], c["verifier"]) for c in (mine, *(c for _, c in rivals))]
        if cells == before:  # nobody's best cell changed: the line would repeat the one above
            continue
        before = cells
        parts = [f"{m} {cell_text(c, False)}: {against(mine, c)}" for m, c in rivals]
        lines.append(f"- {calls_text(budget)}: {subject} {cell_text(mine, False)}; against " + "; ".join(parts) + ".")
    summary = [f"{what} at {budgets_text(list(budgets), tally[key])}" for key, what in (
        ("ahead", "ahead of every baseline's best, intervals apart,"),
        ("behind", "behind the best baseline, intervals apart,"),
        ("overlap", "not told apart from the best baseline")) if tally[key]]
    lines.append(f"- In short, {subject} is " + "; ".join(summary) + " per action.")
    return lines
