package cache

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SetRedisLogger routes go-redis's own messages (pool and reconnection
// notices it prints with the standard logger, as plain text on stderr)
// through logger at warn level, so every line the process writes is JSON.
// go-redis has one logger per process: call this once at start.
func SetRedisLogger(logger *slog.Logger) {
	redis.SetLogger(redisLogger{logger: logger.With("component", "go-redis")})
}

// redisLogger adapts slog to go-redis's Printf-style logging interface.
type redisLogger struct{ logger *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}
