"""KPI objectives: GA4 metric expressions, milestone arithmetic, daily snapshots and the KPI job."""
