package sqlstore

import (
	"context"
	"fmt"
)

// CountAgentsByOrg implements domain.Store.
func (s *Store) CountAgentsByOrg(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT organization_id, COUNT(*) FROM agents WHERE status <> 'decommissioned' GROUP BY organization_id")
	if err != nil {
		return nil, fmt.Errorf("count agents by org: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var org string
		var n int64
		if err := rows.Scan(&org, &n); err != nil {
			return nil, fmt.Errorf("count agents by org: %w", err)
		}
		out[org] = n
	}
	return out, rows.Err()
}
