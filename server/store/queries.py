"""SQL text both backends run alike, built with the backend's placeholder (`?` for SQLite, `%s` for
PostgreSQL): the filters of `Store.list_runs`."""

from __future__ import annotations

from runwire.server.records import RunQuery


def run_filters(q: RunQuery, ph: str) -> tuple[str, str, list]:
    """(WITH prefix, WHERE clause, parameters) selecting the runs of `q` from `runs r JOIN experiments e`
    (the caller checks that `q.parent_run_id` exists)."""
    where: list[str] = []
    params: list = []
    prefix = ""
    if q.parent_run_id:
        if q.recursive:
            prefix = (
                f"WITH RECURSIVE subtree (id) AS (SELECT id FROM runs WHERE parent_id = {ph} "
                "UNION ALL SELECT c.id FROM runs c JOIN subtree s ON c.parent_id = s.id) "
            )
            where.append("r.id IN (SELECT id FROM subtree)")
        else:
            where.append(f"r.parent_id = {ph}")
        params.append(q.parent_run_id)
    else:
        if q.experiment_name:
            where.append(f"e.name = {ph}")
            params.append(q.experiment_name)
        if not q.include_children:
            where.append("r.parent_id IS NULL")
    if q.statuses:
        where.append(f"r.status IN ({', '.join([ph] * len(q.statuses))})")
        params.extend(q.statuses)
    if q.type is not None:
        where.append(f"r.type = {ph}")
        params.append(q.type)
    for table, pairs in (("tags", q.tags), ("properties", q.properties)):
        for key, value in pairs.items():
            cond = f"EXISTS (SELECT 1 FROM {table} x WHERE x.run_id = r.id AND x.key = {ph}"
            params.append(key)
            if value is not None:
                cond += f" AND x.value = {ph}"
                params.append(value)
            where.append(cond + ")")
    return prefix, ("WHERE " + " AND ".join(where)) if where else "", params
