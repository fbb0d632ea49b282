//! The spike rule. A day is a spike for a series when its distinct-source
//! count is above both `median + 2 * IQR` and `mean + 2 * sd` of the previous
//! [`BASELINE_DAYS`] days, and at least `--spike-min`. Two robust-ish tests
//! together: the median/IQR one ignores a few earlier outliers, the mean/sd one
//! ignores series whose quartiles are far apart.
//!
//! Baseline days are the days with a day file among the previous 28 (a series
//! absent from such a file counts 0); at least [`MIN_BASELINE_DAYS`] are needed.
//! Quartiles interpolate linearly between order statistics; sd is the
//! population standard deviation.

use serde::Serialize;

/// Days before the judged day that form its baseline.
pub const BASELINE_DAYS: usize = 28;
/// Fewer baseline days than this: no judgement.
pub const MIN_BASELINE_DAYS: usize = 7;

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
    /// The count a day must exceed: the larger of the two bounds.
    pub fn threshold(&self) -> f64 {
        (self.median + 2.0 * self.iqr).max(self.mean + 2.0 * self.sd)
    }

    pub fn is_spike(&self, count: u32, spike_min: u32) -> bool {
        count >= spike_min && f64::from(count) > self.threshold()
    }
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
        assert!(flat.is_spike(11, 10));
        assert!(!flat.is_spike(10, 10));
        assert!(!flat.is_spike(11, 12), "below --spike-min");
        // Half 10, half 100: mean + 2sd = 145 but median + 2 IQR = 235.
        let split: Vec<u32> = (0..28).map(|i| if i % 2 == 0 { 10 } else { 100 }).collect();
        let b = baseline(&split).unwrap();
        assert_eq!(b.mean + 2.0 * b.sd, 145.0);
        assert_eq!(b.median + 2.0 * b.iqr, 235.0);
        assert!(!b.is_spike(200, 10));
        assert!(b.is_spike(236, 10));
        assert!(baseline(&[1; 6]).is_none());
    }
}
