package counting

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// ActivityDays is how many days (ending today) the heatmap covers.
const ActivityDays = 30

// HeatCell is one cell of the activity heatmap.
type HeatCell struct {
	DayOfWeek int // 0 = Sunday
	Hour      int // 0..23 UTC
	Count     int64
}

// Heatmap sums orgID's events of the last ActivityDays days (UTC) by day
// of week and hour; every one of the 7x24 cells is present, Sunday 00h
// first.
func (s *Service) Heatmap(ctx context.Context, orgID string) ([]HeatCell, error) {
	today := s.now().UTC().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, -(ActivityDays - 1))
	hours, err := s.store.Activity(ctx, orgID, first.Format(DateLayout), today.Format(DateLayout))
	if err != nil {
		return nil, fmt.Errorf("read activity: %w", err)
	}
	var grid [7][24]int64
	for _, h := range hours {
		d, err := time.Parse(DateLayout, h.Date)
		if err != nil || h.Hour < 0 || h.Hour > 23 {
			continue
		}
		grid[d.Weekday()][h.Hour] += h.Count
	}
	out := make([]HeatCell, 0, 7*24)
	for dow := range 7 {
		for hour := range 24 {
			out = append(out, HeatCell{DayOfWeek: dow, Hour: hour, Count: grid[dow][hour]})
		}
	}
	return out, nil
}

// MonthLayout is how a month is written.
const MonthLayout = "2006-01"

// MonthlyAgents returns the current UTC month (YYYY-MM) and, per agent of
// orgID, the tokens issued this month and the latest issuance, most
// tokens first (then by agent id).
func (s *Service) MonthlyAgents(ctx context.Context, orgID string) (string, []AgentUsage, error) {
	now := s.now().UTC()
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	last := first.AddDate(0, 1, -1)
	usage, err := s.store.AgentUsage(ctx, orgID, first.Format(DateLayout), last.Format(DateLayout))
	if err != nil {
		return "", nil, fmt.Errorf("read agent usage: %w", err)
	}
	sort.Slice(usage, func(i, j int) bool {
		if usage[i].Tokens != usage[j].Tokens {
			return usage[i].Tokens > usage[j].Tokens
		}
		return usage[i].AgentID < usage[j].AgentID
	})
	return first.Format(MonthLayout), usage, nil
}

// Counts returns orgID's daily counters of metric for from..to
// (YYYY-MM-DD, inclusive).
func (s *Service) Counts(ctx context.Context, orgID, metric, from, to string) (map[string]int64, error) {
	c, err := s.store.Counts(ctx, orgID, metric, from, to)
	if err != nil {
		return nil, fmt.Errorf("read %s counters: %w", metric, err)
	}
	return c, nil
}
