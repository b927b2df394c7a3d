package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram layout: values below subBucketCount nanoseconds are recorded
// exactly; larger values fall into log-linear buckets where every power of
// two is split into subBucketHalf linear sub-buckets. With subBucketBits = 8
// a bucket spans at most 1/128 of its lower bound, and reporting the bucket
// midpoint bounds the relative error by 1/256 (~0.4%).
const (
	subBucketBits  = 8
	subBucketCount = 1 << subBucketBits
	subBucketHalf  = subBucketCount / 2
	numBuckets     = subBucketCount + (64-subBucketBits)*subBucketHalf
)

// Histogram is a fixed-size log-linear latency histogram with ~0.4% relative
// precision over the whole time.Duration range. It is not safe for
// concurrent use: each worker owns one and they are merged after the run.
// The zero value is empty and ready to use.
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// bucketIndex maps a non-negative value to its bucket.
func bucketIndex(v uint64) int {
	if v < subBucketCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBucketBits // >= 1
	sub := v >> uint(shift)                // in [subBucketHalf, subBucketCount)
	return subBucketCount + (shift-1)*subBucketHalf + int(sub-subBucketHalf)
}

// bucketBounds returns the inclusive value range covered by bucket idx.
func bucketBounds(idx int) (lo, hi uint64) {
	if idx < subBucketCount {
		return uint64(idx), uint64(idx)
	}
	j := idx - subBucketCount
	shift := uint(j/subBucketHalf + 1)
	sub := uint64(j%subBucketHalf + subBucketHalf)
	lo = sub << shift
	return lo, lo + (uint64(1) << shift) - 1
}

// Record adds one observation; negative durations are recorded as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketIndex(uint64(v))]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds every observation of o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of recorded observations.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the exact smallest observation (0 when empty).
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the exact largest observation (0 when empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the exact arithmetic mean (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Percentile returns the q-quantile (0 <= q <= 1) using the nearest-rank
// definition: the smallest recorded value v such that at least ceil(q*n)
// observations are <= v. The result is the midpoint of the bucket holding
// that value, clamped to the exact observed minimum and maximum.
func (h *Histogram) Percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	// The epsilon keeps e.g. 0.999*1000 from rounding up to rank 1000.
	rank := uint64(math.Ceil(q*float64(h.n) - 1e-9))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		cum += c
		if cum >= rank {
			lo, hi := bucketBounds(i)
			v := int64(lo + (hi-lo)/2)
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
