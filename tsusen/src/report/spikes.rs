//! The spike rule. A day is a spike for a series when its distinct-source
//! count is above both `median + k * IQR` and `mean + k * sd` of the previous
//! [`BASELINE_DAYS`] days, and at least `--spike-min`; `k` is `--spike-k`
//! ([`DEFAULT_K`] by default). Two robust-ish tests together: the median/IQR
//! one ignores a few earlier outliers, the mean/sd one ignores series whose
//! quartiles are far apart.
//!
//! Baseline days are the days with a day file among the previous 28 (a series
//! absent from such a file counts 0); at least [`MIN_BASELINE_DAYS`] are needed.
//! Quartiles interpolate linearly between order statistics; sd is the
//! population standard deviation.
//!
//! A spike's size is its [`ratio`]: the count over the threshold (at least 1,
//! so a port new to the baseline, whose threshold is 0, ranks by its count).
//! Spikes are listed by ratio, largest first.

use serde::Serialize;

/// Days before the judged day that form its baseline.
pub const BASELINE_DAYS: usize = 28;
/// Fewer baseline days than this: no judgement.
pub const MIN_BASELINE_DAYS: usize = 7;
/// `--spike-k`: how many IQRs (and SDs) above the median (and mean) a spike is.
pub const DEFAULT_K: f64 = 2.0;

/// A series' baseline before one day.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Baseline {
    pub days: usize,
    pub median: f64,
    pub iqr: f64,
    pub mean: f64,
    pub sd: f64,
}

impl Baseline {
    /// The count a day must exceed: the larger of the two bounds, `k` IQRs
    /// above the median and `k` SDs above the mean.
    pub fn threshold(&self, k: f64) -> f64 {
        (self.median + k * self.iqr).max(self.mean + k * self.sd)
    }

    pub fn is_spike(&self, count: u32, spike_min: u32, k: f64) -> bool {
        count >= spike_min && f64::from(count) > self.threshold(k)
    }

    /// Whether the series had no source on any baseline day: a port new
    /// to the baseline window.
    pub fn is_new(&self) -> bool {
        // Counts are never negative, so a zero mean means all were zero.
        self.mean == 0.0
    }
}

/// A spike's size: `count / threshold`, the threshold taken as at least 1.
pub fn ratio(count: u32, threshold: f64) -> f64 {
    f64::from(count) / threshold.max(1.0)
}

/// The baseline of `history` (counts of the baseline days, oldest first).
pub fn baseline(history: &[u32]) -> Option<Baseline> {
    if history.len() < MIN_BASELINE_DAYS {
        return None;
    }
    let mut sorted: Vec<f64> = history.iter().map(|&n| f64::from(n)).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let mean = sorted.iter().sum::<f64>() / n;
    let variance = sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    Some(Baseline {
        days: sorted.len(),
        median: quantile(&sorted, 0.5),
        iqr: quantile(&sorted, 0.75) - quantile(&sorted, 0.25),
        mean,
        sd: variance.sqrt(),
    })
}

/// Linear interpolation between order statistics (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    // 0 <= pos <= len - 1, so both order statistics exist.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "pos lies in 0..=len-1 and is already floored or ceiled"
    )]
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
#[expect(clippy::float_cmp, reason = "the expected values are exact in binary")]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate() {
        let b = baseline(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(b.median, 4.5);
        assert_eq!(b.iqr, 6.25 - 2.75);
        assert_eq!(b.mean, 4.5);
    }

    #[test]
    fn both_bounds_must_be_exceeded() {
        // Flat baseline: both bounds are 10, so 11 is a spike.
        let flat = baseline(&[10; 28]).unwrap();
        assert!(flat.is_spike(11, 10, DEFAULT_K));
        assert!(!flat.is_spike(10, 10, DEFAULT_K));
        assert!(!flat.is_spike(11, 12, DEFAULT_K), "below --spike-min");
        // Half 10, half 100: mean + 2sd = 145 but median + 2 IQR = 235.
        let split: Vec<u32> = (0..28).map(|i| if i % 2 == 0 { 10 } else { 100 }).collect();
        let b = baseline(&split).unwrap();
        assert_eq!(b.mean + 2.0 * b.sd, 145.0);
        assert_eq!(b.median + 2.0 * b.iqr, 235.0);
        assert!(!b.is_spike(200, 10, DEFAULT_K));
        assert!(b.is_spike(236, 10, DEFAULT_K));
        assert!(baseline(&[1; 6]).is_none());
    }

    #[test]
    fn k_scales_both_bounds() {
        // Half 10, half 100: median 55, IQR 90, mean 55, SD 45.
        let split: Vec<u32> = (0..28).map(|i| if i % 2 == 0 { 10 } else { 100 }).collect();
        let b = baseline(&split).unwrap();
        assert_eq!(
            b.threshold(1.0),
            145.0,
            "median + IQR beats mean + SD (100)"
        );
        assert_eq!(b.threshold(3.0), 325.0);
        assert!(b.is_spike(146, 10, 1.0));
        assert!(!b.is_spike(146, 10, DEFAULT_K));
        // k = 0: above both the median and the mean.
        assert_eq!(b.threshold(0.0), 55.0);
        assert!(b.is_spike(56, 10, 0.0));
    }

    #[test]
    fn ratio_is_count_over_threshold_and_new_ports_rank_by_count() {
        let b = baseline(&[18, 19, 20, 21, 22, 18, 19, 20, 21, 22]).unwrap();
        let t = b.threshold(DEFAULT_K);
        assert_eq!(ratio(60, t), 60.0 / t);
        assert!(!b.is_new());
        let never = baseline(&[0; 28]).unwrap();
        assert!(never.is_new());
        assert_eq!(never.threshold(DEFAULT_K), 0.0);
        assert!(never.is_spike(10, 10, DEFAULT_K));
        assert_eq!(ratio(10, never.threshold(DEFAULT_K)), 10.0);
        // One earlier day with a source: not new.
        let mut once = [0; 28];
        once[3] = 1;
        assert!(!baseline(&once).unwrap().is_new());
    }
}
