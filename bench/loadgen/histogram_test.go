package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistogramPercentiles(t *testing.T) {
	type want struct {
		q float64
		d time.Duration
	}
	tests := []struct {
		name   string
		values func() []time.Duration
		want   []want
	}{
		{
			name:   "empty",
			values: func() []time.Duration { return nil },
			want:   []want{{0.5, 0}, {0.99, 0}, {1, 0}},
		},
		{
			name: "uniform 1..1000us",
			values: func() []time.Duration {
				var v []time.Duration
				for i := 1; i <= 1000; i++ {
					v = append(v, time.Duration(i)*time.Microsecond)
				}
				return v
			},
			want: []want{
				{0, time.Microsecond},
				{0.5, 500 * time.Microsecond},
				{0.9, 900 * time.Microsecond},
				{0.99, 990 * time.Microsecond},
				{0.999, 999 * time.Microsecond},
				{1, 1000 * time.Microsecond},
			},
		},
		{
			name: "constant 5ms",
			values: func() []time.Duration {
				v := make([]time.Duration, 1000)
				for i := range v {
					v[i] = 5 * time.Millisecond
				}
				return v
			},
			want: []want{{0.5, 5 * time.Millisecond}, {0.999, 5 * time.Millisecond}, {1, 5 * time.Millisecond}},
		},
		{
			name: "bimodal 90% 1ms 10% 100ms",
			values: func() []time.Duration {
				var v []time.Duration
				for i := range 1000 {
					if i%10 == 0 {
						v = append(v, 100*time.Millisecond)
					} else {
						v = append(v, time.Millisecond)
					}
				}
				return v
			},
			want: []want{{0.5, time.Millisecond}, {0.9, time.Millisecond}, {0.91, 100 * time.Millisecond}, {0.99, 100 * time.Millisecond}},
		},
		{
			name: "small values are exact",
			values: func() []time.Duration {
				var v []time.Duration
				for i := 1; i <= 100; i++ {
					v = append(v, time.Duration(i))
				}
				return v
			},
			want: []want{{0.5, 50}, {0.9, 90}, {0.99, 99}, {1, 100}},
		},
		{
			name: "wide range 1us..10s log-spaced",
			values: func() []time.Duration {
				var v []time.Duration
				for i := range 701 { // 10^(i/100) us, i = 0..700
					v = append(v, time.Duration(math.Pow(10, float64(i)/100)*float64(time.Microsecond)))
				}
				return v
			},
			// rank ceil(0.5*701)=351 -> 10^3.5 us; rank ceil(0.99*701)=694 -> 10^6.93 us
			want: []want{
				{0.5, time.Duration(math.Pow(10, 3.5) * float64(time.Microsecond))},
				{0.99, time.Duration(math.Pow(10, 6.93) * float64(time.Microsecond))},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			vals := tt.values()
			// Record in shuffled order: the result must not depend on order.
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
			for _, v := range vals {
				h.Record(v)
			}
			if got := h.Count(); got != uint64(len(vals)) {
				t.Fatalf("Count = %d, want %d", got, len(vals))
			}
			for _, w := range tt.want {
				got := h.Percentile(w.q)
				tol := float64(w.d) * 0.005 // histogram precision is ~0.4%
				if math.Abs(float64(got-w.d)) > tol {
					t.Errorf("Percentile(%v) = %v, want %v (±0.5%%)", w.q, got, w.d)
				}
			}
		})
	}
}

func TestBucketBoundsContainValue(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	prev := -1
	for _, v := range []uint64{0, 1, 255, 256, 257, 511, 512, 1 << 20, 1<<63 - 1} {
		idx := bucketIndex(v)
		lo, hi := bucketBounds(idx)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d [%d,%d]", v, idx, lo, hi)
		}
		if idx < prev {
			t.Errorf("bucketIndex not monotonic at %d", v)
		}
		prev = idx
	}
	for range 100000 {
		v := r.Uint64N(1 << 62)
		lo, hi := bucketBounds(bucketIndex(v))
		if v < lo || v > hi {
			t.Fatalf("value %d outside its bucket [%d,%d]", v, lo, hi)
		}
		if width := hi - lo; v >= subBucketCount && float64(width) > float64(lo)/float64(subBucketHalf) {
			t.Fatalf("bucket [%d,%d] wider than 1/%d", lo, hi, subBucketHalf)
		}
	}
	if got := bucketIndex(math.MaxUint64); got != numBuckets-1 {
		t.Errorf("bucketIndex(max) = %d, want %d", got, numBuckets-1)
	}
}

func TestHistogramMergeEqualsSingle(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var all, a, b Histogram
	for i := range 10000 {
		d := time.Duration(r.ExpFloat64() * float64(time.Millisecond))
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var merged Histogram
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&Histogram{}) // merging an empty histogram is a no-op
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		if got, want := merged.Percentile(q), all.Percentile(q); got != want {
			t.Errorf("q=%v: merged %v, single %v", q, got, want)
		}
	}
	if merged.Min() != all.Min() || merged.Max() != all.Max() || merged.Count() != all.Count() {
		t.Errorf("merged min/max/count = %v/%v/%d, want %v/%v/%d",
			merged.Min(), merged.Max(), merged.Count(), all.Min(), all.Max(), all.Count())
	}
}
