package httpx

import (
	"strconv"

	"github.com/labstack/echo/v4"
)

// Page is a validated page request: 1-based page number and page size.
type Page struct {
	Page  int
	Limit int
}

// Offset is the number of rows to skip.
func (p Page) Offset() int { return (p.Page - 1) * p.Limit }

// Pagination is the seed's pagination block, spread into list responses.
type Pagination struct {
	Page       int   `json:"page"`
	Limit      int   `json:"limit"`
	Total      int64 `json:"total"`
	TotalPages int64 `json:"totalPages"`
}

// NewPagination computes the response block.
func NewPagination(p Page, total int64) Pagination {
	pages := total / int64(p.Limit)
	if total%int64(p.Limit) != 0 {
		pages++
	}
	return Pagination{Page: p.Page, Limit: p.Limit, Total: total, TotalPages: pages}
}

// ParsePage reads ?page and ?limit (defaults 1 and def, limit at most max).
func ParsePage(c echo.Context, def, max int) (Page, error) {
	p := Page{Page: 1, Limit: def}
	if v := c.QueryParam("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			return p, Validation("page must be a positive integer", map[string]string{"page": v})
		}
		p.Page = n
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > max {
			return p, Validation("limit must be between 1 and "+strconv.Itoa(max), map[string]string{"limit": v})
		}
		p.Limit = n
	}
	return p, nil
}
