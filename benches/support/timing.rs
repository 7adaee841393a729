//! The timing loop the benchmarks share.

use std::time::Instant;

/// Median nanoseconds per call over `rounds` rounds of `batch` calls, after one warm-up batch.
pub fn median_ns(rounds: usize, batch: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..batch {
        f();
    }
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
